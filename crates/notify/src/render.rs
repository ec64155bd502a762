//! Pieces the chat channels share: which items get full detail, one-line summaries for the
//! rest, and the link buttons.

use crate::{AlertItem, Notification};

/// Items shown with every field; the rest of a big group is listed one line each.
pub const DETAILED: usize = 20;

/// `(detailed, rest)` of the message's items.
pub fn split(n: &Notification, detailed: usize) -> (&[AlertItem], &[AlertItem]) {
    let k = n.items.len().min(detailed);
    n.items.split_at(k)
}

/// `orders-db (tcp://db1:5432) down: refused: connection refused`.
pub fn compact(i: &AlertItem) -> String {
    let mut s = format!("{} ({}) {}", i.monitor, i.target, i.state);
    if let Some(e) = i.error_text() {
        s.push_str(": ");
        s.push_str(&e);
    }
    s
}

/// The message's link buttons: incident, runbook (when all items share one), acknowledge.
pub fn links(n: &Notification) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(u) = n.link() {
        out.push(("Open incident", u.to_string()));
    }
    let runbooks: Vec<&str> = n
        .items
        .iter()
        .filter_map(|i| i.runbook.as_deref())
        .collect();
    if let Some(first) = runbooks.first()
        && runbooks.iter().all(|r| r == first)
    {
        out.push(("Runbook", first.to_string()));
    }
    if let Some(a) = n.ack_link() {
        out.push(("Acknowledge", a.to_string()));
    }
    out
}

/// The line under the title: event, route, note.
pub fn context_line(n: &Notification) -> String {
    let mut parts = vec![format!("{} · {}", n.event, n.change)];
    if n.is_grouped() {
        parts.push(format!(
            "{} monitors, grouped by {}",
            n.items.len(),
            n.group_key
        ));
    }
    if let Some(r) = &n.route {
        parts.push(format!("route {r}"));
    }
    if let Some(note) = &n.note {
        parts.push(note.clone());
    }
    parts.join(" · ")
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut o: String = s.chars().take(max.saturating_sub(1)).collect();
    o.push('…');
    o
}
