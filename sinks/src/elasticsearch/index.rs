//! Index-name patterns (`events-{type}-{yyyy.MM.dd}`): parsing, rendering for one event, and
//! sanitizing the result to Elasticsearch's index-name rules.

use headwater_schemas::Envelope;

use crate::elasticsearch::tenant_of;
use crate::time::UtcHour;

/// Longest index name Elasticsearch accepts, in bytes.
const MAX_INDEX_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Type,
    Route,
    Tenant,
    Date(Vec<DatePiece>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatePiece {
    Year,
    Month,
    Day,
    Hour,
    Sep(char),
}

/// Why an index pattern does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexPatternError {
    /// A `{` without its `}`.
    #[error("unclosed `{{` in `{0}`")]
    Unclosed(String),
    /// A `}` without its `{`.
    #[error("unmatched `}}` in `{0}`")]
    Unmatched(String),
    /// A character Elasticsearch refuses in index names.
    #[error("`{0}` is not allowed in an index name")]
    Forbidden(char),
    /// Nothing at all.
    #[error("must not be empty")]
    Empty,
    /// A leading `-`, `_` or `+`.
    #[error("must not start with `-`, `_` or `+`")]
    BadStart,
    /// A placeholder that is neither a field nor a date.
    #[error(
        "unknown placeholder `{{{0}}}`: use {{type}}, {{route}}, {{tenant}} or a date like {{yyyy.MM.dd}}"
    )]
    UnknownPlaceholder(String),
    /// A date placeholder with separators only.
    #[error("empty placeholder `{{{0}}}`")]
    EmptyPlaceholder(String),
}

/// A parsed index pattern: literal text, `{type}`, `{route}`, `{tenant}` (`hw.tenant`, or
/// [`NO_TENANT`](crate::elasticsearch::NO_TENANT) when empty), and dates from the event's
/// `received_at` in UTC written with `yyyy`, `MM`, `dd`, `HH` and `.`, `-`, `_` between them
/// (e.g. `{yyyy.MM.dd}`, `{yyyy-MM}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    pieces: Vec<Piece>,
}

impl IndexPattern {
    /// Parses a pattern; the error says which part is wrong.
    pub fn parse(pattern: &str) -> Result<Self, IndexPatternError> {
        let mut pieces = Vec::new();
        let mut rest = pattern;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| IndexPatternError::Unclosed(pattern.to_owned()))?;
                    pieces.push(placeholder(&rest[1..end])?);
                    rest = &rest[end + 1..];
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    let lit = &rest[..end];
                    if lit.contains('}') {
                        return Err(IndexPatternError::Unmatched(pattern.to_owned()));
                    }
                    if let Some(c) = lit.chars().find(|c| is_forbidden(*c)) {
                        return Err(IndexPatternError::Forbidden(c));
                    }
                    pieces.push(Piece::Lit(lit.to_lowercase()));
                    rest = &rest[end..];
                }
            }
        }
        match pieces.first() {
            None => Err(IndexPatternError::Empty),
            Some(Piece::Lit(l)) if l.starts_with(['-', '_', '+']) => {
                Err(IndexPatternError::BadStart)
            }
            _ => Ok(Self { pieces }),
        }
    }

    /// The index of one event of `route`: rendered, lowercased, sanitized. A name that starts
    /// with a placeholder's value never starts with `.` (hidden and system indexes): only the
    /// pattern's own literal text may put it there.
    pub fn render(&self, route: &str, envelope: &Envelope) -> String {
        let mut out = String::with_capacity(64);
        for piece in &self.pieces {
            match piece {
                Piece::Lit(l) => out.push_str(l),
                Piece::Type => push_clean(&mut out, &envelope.event_type),
                Piece::Route => push_clean(&mut out, route),
                Piece::Tenant => push_clean(&mut out, tenant_of(envelope)),
                Piece::Date(parts) => {
                    let t = UtcHour::from_epoch_ms(envelope.received_at);
                    for p in parts {
                        match p {
                            DatePiece::Year => out.push_str(&format!("{:04}", t.year)),
                            DatePiece::Month => out.push_str(&format!("{:02}", t.month)),
                            DatePiece::Day => out.push_str(&format!("{:02}", t.day)),
                            DatePiece::Hour => out.push_str(&format!("{:02}", t.hour)),
                            DatePiece::Sep(c) => out.push(*c),
                        }
                    }
                }
            }
        }
        let literal_start = matches!(self.pieces.first(), Some(Piece::Lit(_)));
        finish(out, literal_start)
    }
}

fn placeholder(name: &str) -> Result<Piece, IndexPatternError> {
    match name {
        "type" => return Ok(Piece::Type),
        "route" => return Ok(Piece::Route),
        "tenant" => return Ok(Piece::Tenant),
        _ => {}
    }
    let mut parts = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let (piece, len) = if rest.starts_with("yyyy") {
            (DatePiece::Year, 4)
        } else if rest.starts_with("MM") {
            (DatePiece::Month, 2)
        } else if rest.starts_with("dd") {
            (DatePiece::Day, 2)
        } else if rest.starts_with("HH") {
            (DatePiece::Hour, 2)
        } else if let Some(c @ ('.' | '-' | '_')) = rest.chars().next() {
            (DatePiece::Sep(c), 1)
        } else {
            return Err(IndexPatternError::UnknownPlaceholder(name.to_owned()));
        };
        parts.push(piece);
        rest = &rest[len..];
    }
    if parts.iter().all(|p| matches!(p, DatePiece::Sep(_))) {
        return Err(IndexPatternError::EmptyPlaceholder(name.to_owned()));
    }
    Ok(Piece::Date(parts))
}

/// Characters Elasticsearch refuses in index names (and `:`, reserved for cross-cluster).
fn is_forbidden(c: char) -> bool {
    matches!(
        c,
        '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':'
    ) || c.is_whitespace()
        || c.is_control()
}

fn push_clean(out: &mut String, value: &str) {
    for c in value.chars().flat_map(char::to_lowercase) {
        out.push(if is_forbidden(c) { '_' } else { c });
    }
}

/// Makes a rendered name valid: no leading `- _ +` (nor `.` unless the pattern's literal start
/// put it there), not empty, `.` or `..`, at most [`MAX_INDEX_BYTES`].
fn finish(mut name: String, literal_start: bool) -> String {
    let trimmed = if literal_start {
        name.trim_start_matches(['-', '_', '+'])
    } else {
        name.trim_start_matches(['-', '_', '+', '.'])
    };
    if trimmed.len() != name.len() {
        name = trimmed.to_owned();
    }
    if name.is_empty() || name == "." || name == ".." {
        return "headwater-unnamed".to_owned();
    }
    if name.len() > MAX_INDEX_BYTES {
        let mut end = MAX_INDEX_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(event_type: &str, tenant: &str) -> Envelope {
        Envelope {
            event_type: event_type.into(),
            tenant: tenant.into(),
            received_at: 1_700_000_000_000, // 2023-11-14T22:13:20Z
            ..Envelope::default()
        }
    }

    #[test]
    fn default_pattern() {
        let p = IndexPattern::parse("events-{type}-{yyyy.MM.dd}").unwrap();
        assert_eq!(
            p.render("r", &env("Playback.Start", "acme")),
            "events-playback.start-2023.11.14"
        );
    }

    #[test]
    fn every_placeholder_and_sanitizing() {
        let p = IndexPattern::parse("Logs-{route}-{tenant}-{type}-{yyyy-MM-dd_HH}").unwrap();
        assert_eq!(
            p.render("All Events", &env("a/b*c", "T#1")),
            "logs-all_events-t_1-a_b_c-2023-11-14_22"
        );
        let p = IndexPattern::parse("{type}").unwrap();
        assert_eq!(p.render("r", &env("_x", "")), "x");
        assert_eq!(p.render("r", &env("", "")), "headwater-unnamed");
        let long = "x".repeat(300);
        assert_eq!(p.render("r", &env(&long, "")).len(), 255);
    }

    #[test]
    fn tenant_placeholder() {
        let p = IndexPattern::parse("events-{tenant}-{yyyy.MM}").unwrap();
        assert_eq!(p.render("r", &env("t", "acme")), "events-acme-2023.11");
        assert_ne!(
            p.render("r", &env("t", "acme")),
            p.render("r", &env("t", "globex"))
        );
        // Without `hw.tenant`: the open-mode tenant, never an empty part.
        assert_eq!(p.render("r", &env("t", "")), "events-default-2023.11");
        // Lowercased; `\ / * ? " < > | , # :` and spaces become `_`.
        assert_eq!(
            p.render("r", &env("t", r#"Big Co\/*?"<>|,#:x"#)),
            "events-big_co___________x-2023.11"
        );
        let p = IndexPattern::parse("{tenant}-logs").unwrap();
        assert_eq!(p.render("r", &env("t", "Acme")), "acme-logs");
        assert_eq!(p.render("r", &env("t", "")), "default-logs");
        // A tenant cannot start the name with `- _ +` nor reach hidden/system `.` indexes.
        for tenant in ["-x", "_x", "+x", ".x", "._-.x", "_.x"] {
            assert_eq!(p.render("r", &env("t", tenant)), "x-logs", "{tenant}");
        }
        assert_eq!(p.render("r", &env("t", ".")), "logs");
        let p = IndexPattern::parse("{tenant}").unwrap();
        assert_eq!(p.render("r", &env("t", "..")), "headwater-unnamed");
        // The operator's own literal may start with a dot.
        let p = IndexPattern::parse(".hw-{tenant}").unwrap();
        assert_eq!(p.render("r", &env("t", ".x")), ".hw-.x");
    }

    #[test]
    fn bad_patterns() {
        for bad in ["", "a-{nope}", "a-{", "a}", "a b", "_a", "x-{..}", "a:b"] {
            assert!(IndexPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            IndexPattern::parse("a-{nope}").unwrap_err().to_string(),
            "unknown placeholder `{nope}`: use {type}, {route}, {tenant} or a date like {yyyy.MM.dd}"
        );
        assert_eq!(
            IndexPattern::parse("a-{").unwrap_err().to_string(),
            "unclosed `{` in `a-{`"
        );
    }
}
