//! Name validation against a plainly written oracle of the documented rules, on random
//! strings drawn from the characters that matter (separators, wildcards, whitespace, control
//! characters, non-ASCII).

use aether_core::{ActorId, EventId, Namespace, Pattern};
use proptest::prelude::*;

fn interesting() -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        Just('a'),
        Just('Z'),
        Just('7'),
        Just('_'),
        Just('-'),
        Just('.'),
        Just('*'),
        Just('>'),
        Just(' '),
        Just('\t'),
        Just('\n'),
        Just('\u{0}'),
        Just('\u{7f}'),
        Just('é'),
        Just('\u{a0}'),
        Just('/'),
    ];
    prop::collection::vec(chars, 0..12).prop_map(|c| c.into_iter().collect())
}

fn tokens_ok(s: &str, char_ok: impl Fn(char) -> bool) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|t| !t.is_empty() && t.chars().all(&char_ok) && t != "*" && t != ">")
}

fn printable(c: char) -> bool {
    !c.is_control() && !c.is_whitespace()
}

proptest! {
    #[test]
    fn actor_ids_follow_the_documented_rules(s in interesting()) {
        prop_assert_eq!(ActorId::new(&s).is_ok(), tokens_ok(&s, printable), "{:?}", s);
    }

    #[test]
    fn namespaces_follow_the_documented_rules(s in interesting()) {
        let ok = tokens_ok(&s, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        prop_assert_eq!(Namespace::new(&s).is_ok(), ok, "{:?}", s);
    }

    #[test]
    fn event_ids_follow_the_documented_rules(s in interesting()) {
        prop_assert_eq!(EventId::new(&s).is_ok(), !s.is_empty() && s.chars().all(printable), "{:?}", s);
    }

    #[test]
    fn patterns_follow_the_documented_rules(s in interesting()) {
        let tokens: Vec<&str> = s.split('.').collect();
        let ok = !s.is_empty()
            && s.chars().all(printable)
            && tokens.iter().all(|t| !t.is_empty())
            && tokens.iter().enumerate().all(|(i, t)| *t != ">" || i + 1 == tokens.len());
        prop_assert_eq!(Pattern::new(&s).is_ok(), ok, "{:?}", s);
    }

    #[test]
    fn a_valid_name_is_a_pattern_matching_only_itself(s in interesting(), other in interesting()) {
        if let Ok(ns) = Namespace::new(&s) {
            let exact = Pattern::exact(&ns);
            prop_assert!(exact.matches(&s));
            prop_assert_eq!(exact.matches(&other), other == s);
        }
    }
}
