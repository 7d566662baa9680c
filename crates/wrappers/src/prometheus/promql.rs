//! Building PromQL selectors from quals, with every label value escaped so that no qual can
//! change the query's meaning.

/// Whether `s` is a bare metric name (then label quals can join its selector).
pub fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `s` may be a label name in a selector.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A label value as a PromQL double-quoted string literal.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `name{k1="v1",k2="v2"}` from a bare metric name and label equalities (sorted by the caller
/// or not; order does not change the meaning).
pub fn selector(name: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let matchers: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", escape_label_value(v)))
        .collect();
    format!("{name}{{{}}}", matchers.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_metric_and_label_names() {
        assert!(is_metric_name("node_cpu_seconds_total"));
        assert!(is_metric_name("job:up:sum"));
        assert!(!is_metric_name("rate(x[5m])"));
        assert!(!is_metric_name("up{job=\"a\"}"));
        assert!(is_label_name("job"));
        assert!(!is_label_name("a-b"));
        assert!(!is_label_name("job:x"));
    }

    #[test]
    fn label_values_cannot_break_out() {
        let evil = "x\"} or vector(1) or up{a=\"";
        let s = selector("up", &[("job".into(), evil.into())]);
        assert_eq!(s, "up{job=\"x\\\"} or vector(1) or up{a=\\\"\"}");
        assert_eq!(escape_label_value("a\\b\nc"), "\"a\\\\b\\nc\"");
    }
}
