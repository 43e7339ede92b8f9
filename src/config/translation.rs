//! Number patterns and translations, with Lync's (.NET) meaning.
//!
//! Patterns use the regex crate's syntax, which covers the .NET subset voice admins write.
//! Translations follow .NET's `Regex.Replace` substitutions: `$1`, `${1}`, `${name}`, `$0`/`$&`
//! (the whole match) and `$$` (a dollar sign). They are compiled once into [`Piece`]s, so the
//! regex crate's own `$1name` reading (one group called `1name`) never applies: `$1` followed
//! by letters is group 1 then the letters, as in .NET. A reference to a group the pattern does
//! not have is an error here (.NET would silently write it out literally, which is never what
//! the admin meant).

use regex_syntax::hir::{Hir, HirKind};

/// One part of a compiled translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    /// Capture group by index; 0 is the whole match.
    Group(usize),
}

/// A compiled translation template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub pieces: Vec<Piece>,
}

/// What a translation needs to know about its pattern.
pub struct PatternInfo {
    pub hir: Hir,
    /// Explicit capture groups (group 0, the whole match, not counted).
    pub groups: usize,
    pub names: Vec<(String, usize)>,
}

/// Parses a pattern with the same syntax and defaults as the regex crate.
pub fn parse_pattern(pattern: &str) -> Result<PatternInfo, String> {
    let hir = regex_syntax::ParserBuilder::new()
        .nest_limit(250)
        .build()
        .parse(pattern)
        .map_err(|e| one_line(&e.to_string()))?;
    let groups = hir.properties().explicit_captures_len();
    let mut names = Vec::new();
    collect_names(&hir, &mut names);
    Ok(PatternInfo { hir, groups, names })
}

/// The shape nearly every number pattern of a carrier table has: `^`, literal digits (and
/// `\+`), then `\d` runs (`\d`, `\d{4}`, `\d{2,6}`, `\d{2,}`, `\d+`, `\d*`, `\d?`), then an
/// optional `$`. Such a pattern is a valid regex, and this is what its parse would say about
/// it, without running the regex parser (a big table has 100,000 of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimplePattern {
    /// The literal after `^`.
    pub prefix: String,
    /// Whether any `\d` follows it.
    pub digits: bool,
    /// How many `\d` at least and at most (None: unbounded).
    pub min: u32,
    pub max: Option<u32>,
    /// Ends with `$`.
    pub end: bool,
}

/// `pattern` as a [`SimplePattern`], or None when it has any other shape (then parse it).
pub fn simple_pattern(pattern: &str) -> Option<SimplePattern> {
    let mut rest = pattern.strip_prefix('^')?.as_bytes();
    let mut prefix = String::new();
    loop {
        match rest {
            [b'\\', b'+', tail @ ..] => {
                prefix.push('+');
                rest = tail;
            }
            [d, tail @ ..] if d.is_ascii_digit() => {
                prefix.push(char::from(*d));
                rest = tail;
            }
            _ => break,
        }
    }
    let (mut min, mut max, mut digits) = (0u32, Some(0u32), false);
    while let [b'\\', b'd', tail @ ..] = rest {
        rest = tail;
        digits = true;
        let (lo, hi, tail) = quantifier(rest)?;
        rest = tail;
        min = min.checked_add(lo)?;
        max = match (max, hi) {
            (Some(a), Some(b)) => Some(a.checked_add(b)?),
            _ => None,
        };
    }
    let end = match rest {
        [] => false,
        [b'$'] => true,
        _ => return None,
    };
    Some(SimplePattern {
        prefix,
        digits,
        min,
        max,
        end,
    })
}

/// The greedy quantifier at the start of `s` (none: exactly once), and what follows it.
fn quantifier(s: &[u8]) -> Option<(u32, Option<u32>, &[u8])> {
    let (lo, hi, rest) = match s {
        [b'+', t @ ..] => (1, None, t),
        [b'*', t @ ..] => (0, None, t),
        [b'?', t @ ..] => (0, Some(1), t),
        [b'{', t @ ..] => {
            let close = t.iter().position(|&b| b == b'}')?;
            let body = std::str::from_utf8(t.get(..close)?).ok()?;
            let num = |x: &str| -> Option<u32> {
                // Plain decimal only (no sign, no spaces), small enough for any parser.
                (!x.is_empty() && x.len() <= 6 && x.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| x.parse().ok())
                    .flatten()
            };
            let (lo, hi) = match body.split_once(',') {
                None => {
                    let n = num(body)?;
                    (n, Some(n))
                }
                Some((a, "")) => (num(a)?, None),
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return None;
                    }
                    (a, Some(b))
                }
            };
            (lo, hi, t.get(close + 1..)?)
        }
        _ => return Some((1, Some(1), s)),
    };
    // A lazy (`+?`) or possessive-looking suffix is another shape.
    if matches!(rest.first(), Some(b'?' | b'+' | b'*' | b'{')) {
        return None;
    }
    Some((lo, hi, rest))
}

fn one_line(s: &str) -> String {
    // regex-syntax draws a multi-line caret diagram; the last line holds the reason.
    s.lines()
        .rev()
        .find(|l| l.trim_start().starts_with("error:"))
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| s.trim().to_owned())
}

fn collect_names(hir: &Hir, out: &mut Vec<(String, usize)>) {
    match hir.kind() {
        HirKind::Capture(c) => {
            if let Some(name) = &c.name {
                out.push((name.to_string(), c.index as usize));
            }
            collect_names(&c.sub, out);
        }
        HirKind::Concat(v) | HirKind::Alternation(v) => {
            for h in v {
                collect_names(h, out);
            }
        }
        HirKind::Repetition(r) => collect_names(&r.sub, out),
        _ => {}
    }
}

impl Translation {
    /// Compiles `template` for a pattern with `info`'s groups.
    pub fn parse(template: &str, info: &PatternInfo) -> Result<Translation, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = template;
        while let Some(pos) = rest.find('$') {
            lit.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (group, used) = if let Some(tail) = after.strip_prefix('$') {
                lit.push('$');
                rest = tail;
                continue;
            } else if let Some(tail) = after.strip_prefix('&') {
                (0, after.len() - tail.len())
            } else if let Some(tail) = after.strip_prefix('{') {
                let end = tail
                    .find('}')
                    .ok_or_else(|| format!("unterminated `${{` in translation `{template}`"))?;
                let name = &tail[..end];
                let group = if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                    name.parse::<usize>()
                        .map_err(|_| format!("group number `{name}` too large"))?
                } else {
                    info.names
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, i)| *i)
                        .ok_or_else(|| {
                            format!("translation refers to group `{name}`, which the pattern does not define")
                        })?
                };
                (group, end + 2)
            } else {
                let digits = after.bytes().take_while(u8::is_ascii_digit).count();
                if digits == 0 {
                    return Err(format!(
                        "`$` must be followed by a group (`$1`, `${{name}}`), `&` or `$` in translation `{template}`"
                    ));
                }
                let group = after[..digits]
                    .parse::<usize>()
                    .map_err(|_| format!("group number `{}` too large", &after[..digits]))?;
                (group, digits)
            };
            if group > info.groups {
                return Err(format!(
                    "translation refers to group ${group}, but the pattern has {} capture group{}",
                    info.groups,
                    if info.groups == 1 { "" } else { "s" }
                ));
            }
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Group(group));
            rest = &after[used..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Ok(Translation { pieces })
    }

    /// Appends the substitution for one match; `group(i)` gives the text of group `i`
    /// (empty when the group did not take part in the match, as in .NET).
    pub fn expand<'h>(&self, group: impl Fn(usize) -> Option<&'h str>, out: &mut String) {
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Group(i) => out.push_str(group(*i).unwrap_or("")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(p: &str, t: &str) -> Result<Translation, String> {
        Translation::parse(t, &parse_pattern(p).unwrap())
    }

    #[test]
    fn dotnet_substitutions() {
        use Piece::*;
        assert_eq!(
            tr(r"^(\d{10})$", "+1$1").unwrap().pieces,
            vec![Literal("+1".into()), Group(1)]
        );
        // `$1` then letters is group 1 then the letters (not a group called `1abc`).
        assert_eq!(
            tr(r"^(\d+)$", "$1abc").unwrap().pieces,
            vec![Group(1), Literal("abc".into())]
        );
        assert_eq!(
            tr(r"^(?P<n>\d+)(\d)$", "${n}-${2}$$$&").unwrap().pieces,
            vec![
                Group(1),
                Literal("-".into()),
                Group(2),
                Literal("$".into()),
                Group(0)
            ]
        );
        assert!(tr(r"^(\d+)$", "$2").is_err());
        assert!(tr(r"^(\d+)$", "${x}").is_err());
        assert!(tr(r"^(\d+)$", "${1").is_err());
        assert!(tr(r"^(\d+)$", "$x").is_err());
        assert!(parse_pattern(r"^(\d+$").is_err());
    }

    #[test]
    fn simple_patterns_are_recognized_and_nothing_else() {
        let s = |p| simple_pattern(p).map(|s| (s.prefix, s.digits, s.min, s.max, s.end));
        assert_eq!(
            s(r"^\+1206555\d{4}$"),
            Some(("+1206555".into(), true, 4, Some(4), true))
        );
        assert_eq!(
            s(r"^\+44207"),
            Some(("+44207".into(), false, 0, Some(0), false))
        );
        assert_eq!(
            s(r"^\+1\d\d{2,}$"),
            Some(("+1".into(), true, 3, None, true))
        );
        assert_eq!(s(r"^0\d?\d*"), Some(("0".into(), true, 0, None, false)));
        assert_eq!(s(r"^$"), Some(("".into(), false, 0, Some(0), true)));
        for other in [
            r"\+1206",
            r"^\+1\d{4}?$",
            r"^\+1\d+?",
            r"^\+1\d{5,2}$",
            r"^\+1\d{ 4}$",
            r"^\+1\d{4}$x",
            r"^\+1[2-9]\d$",
            r"^(\+1)\d$",
            r"^+1",
            r"^\+1\d{9999999}",
        ] {
            assert_eq!(s(other), None, "{other}");
        }
        // Every simple pattern is a valid regex.
        for p in [r"^\+1206555\d{4}$", r"^\+1\d\d{2,}$", r"^0\d?\d*", r"^$"] {
            assert!(parse_pattern(p).is_ok());
        }
    }
}
