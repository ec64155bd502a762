//! The combined verdict over locations: quorum → global, fewer → regional naming them,
//! silent locations neither fail nor count.

use std::collections::HashSet;

use portwarden_core::{Scope, State};
use portwarden_engine::combine;

fn silent(v: &[&str]) -> HashSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn one_of_three_is_regional_two_is_global() {
    let all = ["a", "b", "c"];
    let up = [("a", State::Up), ("b", State::Up), ("c", State::Up)];
    assert_eq!(
        combine(&up, &all, &silent(&[]), None),
        (State::Up, Scope::Global)
    );
    let one = [("a", State::Up), ("b", State::Down), ("c", State::Up)];
    assert_eq!(
        combine(&one, &all, &silent(&[]), None),
        (State::Down, Scope::Regional(vec!["b".into()]))
    );
    let two = [("a", State::Down), ("b", State::Down), ("c", State::Up)];
    assert_eq!(
        combine(&two, &all, &silent(&[]), None),
        (State::Down, Scope::Global)
    );
    // min_locations: 3 keeps two failing locations regional.
    assert_eq!(
        combine(&two, &all, &silent(&[]), Some(3)),
        (State::Down, Scope::Regional(vec!["a".into(), "b".into()]))
    );
}

#[test]
fn fewer_locations_than_the_quorum_need_all() {
    // One location: a failure there is global (quorum = all = 1).
    assert_eq!(
        combine(&[("local", State::Down)], &["local"], &silent(&[]), None),
        (State::Down, Scope::Global)
    );
    // min_locations 5 with 2 locations: both must fail.
    let one = [("a", State::Down), ("b", State::Up)];
    assert_eq!(
        combine(&one, &["a", "b"], &silent(&[]), Some(5)),
        (State::Down, Scope::Regional(vec!["a".into()]))
    );
}

#[test]
fn a_silent_location_is_unknown_never_down() {
    let all = ["a", "b", "c"];
    // b's agent went silent while b saw the target down: b does not count.
    let s = [("a", State::Up), ("b", State::Down), ("c", State::Up)];
    assert_eq!(
        combine(&s, &all, &silent(&["b"]), None),
        (State::Up, Scope::Global)
    );
    // Everyone silent: unknown.
    let s = [("a", State::Down), ("b", State::Down), ("c", State::Down)];
    assert_eq!(
        combine(&s, &all, &silent(&["a", "b", "c"]), None),
        (State::Unknown, Scope::Global)
    );
    // With b silent only a and c count: quorum is 2 of 2.
    let s = [("a", State::Down), ("b", State::Up), ("c", State::Up)];
    assert_eq!(
        combine(&s, &all, &silent(&["b"]), None),
        (State::Down, Scope::Regional(vec!["a".into()]))
    );
}

#[test]
fn worst_state_wins() {
    let s = [("a", State::Degraded), ("b", State::Down), ("c", State::Up)];
    assert_eq!(
        combine(&s, &["a", "b", "c"], &silent(&[]), None),
        (State::Down, Scope::Global)
    );
}
