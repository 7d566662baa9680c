//! The one place where names and values become SQL text.

/// A SQL identifier, always quoted: `"name"`.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal: `'value'` (standard_conforming_strings, which PostgreSQL 15 always has).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A comment naming what runs a statement (`/* pgdw panel: ... */`), which pg_stat_statements
/// keeps with the text. Neither end of a comment inside: PostgreSQL nests them, so a `/*`
/// would swallow the statement after it.
pub fn comment(text: &str) -> String {
    format!("/* {} */", text.replace("*/", "* /").replace("/*", "/ *"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_cannot_be_escaped() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("x'); DROP TABLE t; --"), "'x''); DROP TABLE t; --'");
    }

    #[test]
    fn comments_cannot_be_closed_or_nested() {
        assert_eq!(
            comment("pgdw job: a */ DROP /* b"),
            "/* pgdw job: a * / DROP / * b */"
        );
    }
}
