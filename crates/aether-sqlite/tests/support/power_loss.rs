//! A SQLite VFS shim that models what a power loss leaves on disk: only the writes that a
//! sync covered.
//!
//! [`install`] registers it as the process's default VFS, wrapping the real one (`unix`): every
//! call goes through to the real files unchanged. For the files in a [`track`]ed directory it
//! also keeps, per file, the *synced image* — the bytes a sync has made durable — and the
//! writes (and truncations) issued since the file's last sync. A sync applies the writes issued
//! before it to the image. [`image`] is then what a power loss at that instant leaves: the
//! synced image of each file, plus (to model a disk that wrote some of its cache in any
//! order) a chosen subset of the writes not yet synced.
//!
//! Not modelled: directory entries (a file created or deleted is taken as durable at once)
//! and torn writes inside one write call (the `unix` VFS reports powersafe overwrite).

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once, OnceLock, PoisonError};

use rusqlite::ffi;

/// A write or truncation issued and not yet covered by a sync.
#[derive(Clone)]
enum Pending {
    Write { offset: usize, bytes: Vec<u8> },
    Truncate(usize),
}

impl Pending {
    fn apply(&self, image: &mut Vec<u8>) {
        match self {
            Self::Write { offset, bytes } => {
                let end = offset + bytes.len();
                if image.len() < end {
                    image.resize(end, 0);
                }
                image[*offset..end].copy_from_slice(bytes);
            }
            Self::Truncate(size) => image.truncate(*size),
        }
    }
}

#[derive(Default)]
struct Tracked {
    synced: Vec<u8>,
    pending: Vec<Pending>,
    /// Syncs that covered at least one write.
    syncs: u64,
}

#[derive(Default)]
struct State {
    dirs: Vec<PathBuf>,
    files: HashMap<PathBuf, Tracked>,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The real VFS, wrapped.
struct RealVfs(*mut ffi::sqlite3_vfs);
// SAFETY: SQLite's VFS objects are immutable once registered and used from any thread.
unsafe impl Send for RealVfs {}
unsafe impl Sync for RealVfs {}

static REAL: OnceLock<RealVfs> = OnceLock::new();

fn real() -> *mut ffi::sqlite3_vfs {
    REAL.get().expect("installed").0
}

/// Our file: SQLite allocates `szOsFile` bytes for it; the real file follows it.
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// The tracked path (a leaked `Box<PathBuf>`, freed on close), or null.
    tracked: *mut PathBuf,
}

const REAL_OFFSET: usize = std::mem::size_of::<ShimFile>().next_multiple_of(16);

/// Registers the shim as the default VFS (once per process).
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: FFI with SQLite's documented VFS API; the shim's VFS object is leaked so it
        // lives as long as the process, as SQLite requires of a registered VFS.
        unsafe {
            assert_eq!(ffi::sqlite3_initialize(), ffi::SQLITE_OK);
            let real = ffi::sqlite3_vfs_find(std::ptr::null());
            assert!(!real.is_null(), "no default VFS");
            REAL.get_or_init(|| RealVfs(real));
            let mut shim: ffi::sqlite3_vfs = *real;
            shim.szOsFile = c_int::try_from(REAL_OFFSET).expect("small") + (*real).szOsFile;
            shim.zName = c"aether-power-loss".as_ptr();
            shim.pNext = std::ptr::null_mut();
            shim.xOpen = Some(open);
            shim.xDelete = Some(delete);
            let shim = Box::leak(Box::new(shim));
            assert_eq!(ffi::sqlite3_vfs_register(shim, 1), ffi::SQLITE_OK);
        }
    });
}

/// Tracks the files SQLite opens in `dir` from now on (`dir` must exist).
pub(crate) fn track(dir: &Path) -> PathBuf {
    let dir = dir.canonicalize().expect("canonical directory");
    state().dirs.push(dir.clone());
    dir
}

/// Syncs that covered writes, over the files of `dir`.
pub(crate) fn syncs(dir: &Path) -> u64 {
    let state = state();
    state
        .files
        .iter()
        .filter(|(path, _)| path.parent() == Some(dir))
        .map(|(_, t)| t.syncs)
        .sum()
}

/// What a power loss now leaves of each tracked file of `dir` (file name, bytes): its synced
/// image, plus the writes not yet synced that `keep` chooses (in the order issued).
pub(crate) fn image(dir: &Path, mut keep: impl FnMut() -> bool) -> Vec<(String, Vec<u8>)> {
    let state = state();
    let mut files = Vec::new();
    for (path, tracked) in &state.files {
        if path.parent() != Some(dir) {
            continue;
        }
        let mut bytes = tracked.synced.clone();
        for pending in &tracked.pending {
            if keep() {
                pending.apply(&mut bytes);
            }
        }
        let name = path
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        files.push((name, bytes));
    }
    files
}

fn path_of(name: *const c_char) -> Option<PathBuf> {
    if name.is_null() {
        return None;
    }
    // SAFETY: SQLite passes a NUL-terminated file name.
    let name = unsafe { CStr::from_ptr(name) };
    Some(PathBuf::from(name.to_str().ok()?))
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let _ = vfs;
    // SAFETY: `file` has room for `ShimFile` and the real file after it (`szOsFile`).
    unsafe {
        let shim = file.cast::<ShimFile>();
        let real_file = file
            .cast::<u8>()
            .add(REAL_OFFSET)
            .cast::<ffi::sqlite3_file>();
        (*shim).base.pMethods = std::ptr::null();
        (*shim).real = real_file;
        (*shim).tracked = std::ptr::null_mut();
        let real = real();
        let rc = ((*real).xOpen.expect("xOpen"))(real, name, real_file, flags, out_flags);
        if rc != ffi::SQLITE_OK || (*real_file).pMethods.is_null() {
            return rc;
        }
        (*shim).base.pMethods = methods((*real_file).pMethods);
        let kinds = ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL;
        if flags & kinds != 0
            && let Some(path) = path_of(name)
        {
            let mut state = state();
            if path
                .parent()
                .is_some_and(|p| state.dirs.iter().any(|d| d == p))
            {
                state.files.entry(path.clone()).or_insert_with(|| Tracked {
                    // A file that existed before: all of it was durable.
                    synced: std::fs::read(&path).unwrap_or_default(),
                    ..Tracked::default()
                });
                (*shim).tracked = Box::into_raw(Box::new(path));
            }
        }
        rc
    }
}

unsafe extern "C" fn delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    let _ = vfs;
    let real = real();
    // SAFETY: forwarding SQLite's own arguments to the real VFS.
    let rc = unsafe { ((*real).xDelete.expect("xDelete"))(real, name, sync_dir) };
    if rc == ffi::SQLITE_OK
        && let Some(path) = path_of(name)
    {
        state().files.remove(&path);
    }
    rc
}

/// The shim's methods for a real file with methods `real`: the same version and the same
/// optional methods.
fn methods(real: *const ffi::sqlite3_io_methods) -> *const ffi::sqlite3_io_methods {
    static CACHE: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, ours)) = cache.iter().find(|(r, _)| *r == real as usize) {
        return *ours as *const ffi::sqlite3_io_methods;
    }
    // SAFETY: `real` points to the real VFS's static methods.
    let r = unsafe { &*real };
    let ours = ffi::sqlite3_io_methods {
        iVersion: r.iVersion,
        xClose: Some(close),
        xRead: Some(read),
        xWrite: Some(write),
        xTruncate: Some(truncate),
        xSync: Some(sync),
        xFileSize: Some(file_size),
        xLock: Some(lock),
        xUnlock: Some(unlock),
        xCheckReservedLock: Some(check_reserved_lock),
        xFileControl: Some(file_control),
        xSectorSize: Some(sector_size),
        xDeviceCharacteristics: Some(device_characteristics),
        xShmMap: r.xShmMap.map(|_| shm_map as _),
        xShmLock: r.xShmLock.map(|_| shm_lock as _),
        xShmBarrier: r.xShmBarrier.map(|_| shm_barrier as _),
        xShmUnmap: r.xShmUnmap.map(|_| shm_unmap as _),
        xFetch: r.xFetch.map(|_| fetch as _),
        xUnfetch: r.xUnfetch.map(|_| unfetch as _),
    };
    let ours = Box::leak(Box::new(ours)) as *const ffi::sqlite3_io_methods;
    cache.push((real as usize, ours as usize));
    ours
}

/// The real file and its methods.
///
/// # Safety
///
/// `file` must be a `ShimFile` opened by [`open`].
unsafe fn real_of(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    // SAFETY: as the caller promises.
    unsafe {
        let real = (*file.cast::<ShimFile>()).real;
        (real, &*(*real).pMethods)
    }
}

/// The tracked path of `file`, if any.
///
/// # Safety
///
/// As [`real_of`].
unsafe fn tracked_of(file: *mut ffi::sqlite3_file) -> Option<&'static PathBuf> {
    // SAFETY: as the caller promises; the box lives until close.
    unsafe { (*file.cast::<ShimFile>()).tracked.as_ref() }
}

macro_rules! forward {
    ($name:ident, $method:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: SQLite calls the methods of a file our `open` opened.
            unsafe {
                let (real, m) = real_of(file);
                (m.$method.expect(stringify!($method)))(real $(, $arg)*)
            }
        }
    };
}

forward!(read, xRead(buf: *mut c_void, amount: c_int, offset: i64) -> c_int);
forward!(file_size, xFileSize(size: *mut i64) -> c_int);
forward!(lock, xLock(level: c_int) -> c_int);
forward!(unlock, xUnlock(level: c_int) -> c_int);
forward!(check_reserved_lock, xCheckReservedLock(out: *mut c_int) -> c_int);
forward!(file_control, xFileControl(op: c_int, arg: *mut c_void) -> c_int);
forward!(sector_size, xSectorSize() -> c_int);
forward!(device_characteristics, xDeviceCharacteristics() -> c_int);
forward!(shm_map, xShmMap(page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int);
forward!(shm_lock, xShmLock(offset: c_int, n: c_int, flags: c_int) -> c_int);
forward!(shm_barrier, xShmBarrier() -> ());
forward!(shm_unmap, xShmUnmap(delete: c_int) -> c_int);
forward!(fetch, xFetch(offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int);
forward!(unfetch, xUnfetch(offset: i64, page: *mut c_void) -> c_int);

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file our `open` opened, once.
    unsafe {
        let (real, m) = real_of(file);
        let rc = (m.xClose.expect("xClose"))(real);
        let shim = file.cast::<ShimFile>();
        if !(*shim).tracked.is_null() {
            drop(Box::from_raw((*shim).tracked));
            (*shim).tracked = std::ptr::null_mut();
        }
        rc
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite writes `amount` bytes from `buf` to a file our `open` opened.
    unsafe {
        let (real, m) = real_of(file);
        let tracked = tracked_of(file);
        // Recorded under the lock around the real write, so a sync or an image sees writes in
        // the order they reached the file.
        let mut state = tracked.map(|_| state());
        let rc = (m.xWrite.expect("xWrite"))(real, buf, amount, offset);
        if rc == ffi::SQLITE_OK
            && let (Some(path), Some(state)) = (tracked, state.as_mut())
        {
            let bytes = std::slice::from_raw_parts(
                buf.cast::<u8>(),
                usize::try_from(amount).expect("size"),
            );
            if let Some(t) = state.files.get_mut(path) {
                t.pending.push(Pending::Write {
                    offset: usize::try_from(offset).expect("offset"),
                    bytes: bytes.to_vec(),
                });
            }
        }
        rc
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: as `write`.
    unsafe {
        let (real, m) = real_of(file);
        let tracked = tracked_of(file);
        let mut state = tracked.map(|_| state());
        let rc = (m.xTruncate.expect("xTruncate"))(real, size);
        if rc == ffi::SQLITE_OK
            && let (Some(path), Some(state)) = (tracked, state.as_mut())
            && let Some(t) = state.files.get_mut(path)
        {
            t.pending
                .push(Pending::Truncate(usize::try_from(size).expect("size")));
        }
        rc
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: as `write`.
    unsafe {
        let (real, m) = real_of(file);
        let Some(path) = tracked_of(file) else {
            return (m.xSync.expect("xSync"))(real, flags);
        };
        // The writes issued before the sync starts are the ones it covers.
        let covered = state().files.get(path).map_or(0, |t| t.pending.len());
        let rc = (m.xSync.expect("xSync"))(real, flags);
        if rc == ffi::SQLITE_OK
            && let Some(t) = state().files.get_mut(path)
            && covered > 0
        {
            let done: Vec<Pending> = t.pending.drain(..covered).collect();
            for pending in &done {
                pending.apply(&mut t.synced);
            }
            t.syncs += 1;
        }
        rc
    }
}
