//! Properties of the JetStream naming scheme: injective, reversible, and never a wildcard.

use aether_core::{ActorId, Namespace};
use aether_nats::naming::{actor_subject, decode_token, encode_token, stream_name};
use proptest::prelude::*;

proptest! {
    #[test]
    fn encoding_round_trips_and_stays_in_its_alphabet(raw in any::<String>()) {
        let token = encode_token(&raw);
        prop_assert!(token.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_')), "{}", token);
        prop_assert_eq!(decode_token(&token).unwrap(), raw);
    }

    #[test]
    fn different_names_never_share_a_token(a in any::<String>(), b in any::<String>()) {
        prop_assume!(a != b);
        prop_assert_ne!(encode_token(&a), encode_token(&b));
    }

    #[test]
    fn actor_subjects_are_three_literal_tokens(actor in "[!-~]{1,40}") {
        // Any printable ASCII id that ActorId accepts, wildcard-looking ones included.
        if let Ok(actor) = ActorId::new(&actor) {
            let subject = actor_subject(&Namespace::new("prod.a").unwrap(), &actor);
            let tokens: Vec<&str> = subject.split('.').collect();
            prop_assert_eq!(tokens.len(), 3, "{}", subject);
            prop_assert!(tokens.iter().all(|t| *t != "*" && *t != ">" && !t.is_empty()));
        }
    }
}

#[test]
fn namespaces_that_differ_only_in_escaped_characters_get_different_streams() {
    let names = ["a.b", "a_b", "a-b", "A.b", "a.B", "ab"];
    let mut streams: Vec<String> = names
        .iter()
        .map(|n| stream_name(&Namespace::new(n).unwrap()))
        .collect();
    streams.sort();
    streams.dedup();
    assert_eq!(streams.len(), names.len(), "{streams:?}");
}
