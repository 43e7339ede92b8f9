//! Lync's `PSListModifier`: how a multi-valued parameter is changed.
//!
//! `Set-CsTrunkConfiguration -PstnUsages @{add="Local"}` does not replace the trunk's list; it
//! appends to it. This module parses the forms an admin types and the JSON form the admin API
//! takes, and applies them to a list:
//!
//! | form | example |
//! | --- | --- |
//! | PowerShell literal | `@{add="A"}`, `@{Add='A','B'}`, `@{remove="X"}`, `@{replace="A","B"}`, `@{add="A"; remove="B"}` |
//! | plain | `add=A,B`, `remove=X`, `replace=A,B`, `add=A;remove=B` |
//! | bare list | `A,B` (replace) |
//! | JSON | `{"add":["A"]}`, `{"remove":["X"]}`, `{"replace":["A","B"]}`, `["A","B"]` (replace) |
//!
//! Keys are case-insensitive. Values may be double- or single-quoted (a doubled quote inside a
//! quoted value is a literal quote, as in PowerShell) or bare; bare values are accepted because a
//! shell that was not given the literal in single quotes strips the double quotes.
//!
//! Applying: `replace` sets the whole list, `add` appends each value not already present, in
//! order, `remove` deletes every occurrence of each value. When one modifier combines several
//! keys they apply in that order: replace, then add, then remove (so `@{add="A"; remove="A"}`
//! leaves no `A`).

use serde_json::{Map, Value};

/// A change to a list of strings (Lync's `PSListModifier`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListModifier {
    /// Sets the whole list (applied first).
    pub replace: Option<Vec<String>>,
    /// Appended in order, skipping values already in the list (applied second).
    pub add: Option<Vec<String>>,
    /// Deleted from the list (applied last).
    pub remove: Option<Vec<String>>,
}

/// Why a modifier could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModifierError {
    #[error("empty list modifier: expected e.g. @{{add=\"A\"}}, add=A,B or A,B")]
    Empty,
    #[error("unknown list modifier key '{0}': expected add, remove or replace")]
    UnknownKey(String),
    #[error("list modifier key '{0}' given twice")]
    DuplicateKey(String),
    #[error("missing '=' after list modifier key in '{0}'")]
    MissingEquals(String),
    #[error("unterminated quoted value starting at byte {0}")]
    UnterminatedQuote(usize),
    #[error("empty value in the list of '{0}'")]
    EmptyValue(String),
    #[error("unexpected character '{ch}' at byte {at}")]
    Unexpected { ch: char, at: usize },
    #[error("missing closing '}}' of the @{{...}} literal")]
    Unclosed,
    #[error("{0}")]
    Json(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Add,
    Remove,
    Replace,
}

impl Key {
    fn parse(s: &str) -> Option<Key> {
        if s.eq_ignore_ascii_case("add") {
            Some(Key::Add)
        } else if s.eq_ignore_ascii_case("remove") {
            Some(Key::Remove)
        } else if s.eq_ignore_ascii_case("replace") {
            Some(Key::Replace)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Key::Add => "add",
            Key::Remove => "remove",
            Key::Replace => "replace",
        }
    }
}

impl ListModifier {
    /// Replace the whole list.
    pub fn replace<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        ListModifier {
            replace: Some(values.into_iter().map(Into::into).collect()),
            ..Default::default()
        }
    }

    /// Append values not yet present.
    pub fn add<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        ListModifier {
            add: Some(values.into_iter().map(Into::into).collect()),
            ..Default::default()
        }
    }

    /// Delete values.
    pub fn remove<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        ListModifier {
            remove: Some(values.into_iter().map(Into::into).collect()),
            ..Default::default()
        }
    }

    /// Parses the PowerShell literal, the plain form or a bare comma-separated list.
    pub fn parse(input: &str) -> Result<Self, ModifierError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ModifierError::Empty);
        }
        if let Some(rest) = s.strip_prefix("@{") {
            let offset = input.len() - input.trim_start().len() + 2;
            let inner = rest.strip_suffix('}').ok_or(ModifierError::Unclosed)?;
            return Self::parse_clauses(inner, offset);
        }
        let offset = input.len() - input.trim_start().len();
        if first_key(s).is_some() {
            return Self::parse_clauses(s, offset);
        }
        // A bare list: the whole input is the values of `replace`.
        let values = parse_values(s, offset, Key::Replace)?;
        Ok(ListModifier {
            replace: Some(values),
            ..Default::default()
        })
    }

    /// `key = values` clauses separated by `;` or new lines.
    fn parse_clauses(inner: &str, offset: usize) -> Result<Self, ModifierError> {
        let mut m = ListModifier::default();
        let mut any = false;
        for (start, clause) in split_outside_quotes(inner, &[';', '\n', '\r'], offset)? {
            let trimmed = clause.trim();
            if trimmed.is_empty() {
                continue;
            }
            let Some(eq) = trimmed.find('=') else {
                return Err(ModifierError::MissingEquals(trimmed.to_string()));
            };
            let key_text = trimmed[..eq].trim();
            let key = Key::parse(key_text)
                .ok_or_else(|| ModifierError::UnknownKey(key_text.to_string()))?;
            let lead = clause.len() - clause.trim_start().len();
            let values_at = offset + start + lead + eq + 1;
            let values = parse_values(&trimmed[eq + 1..], values_at, key)?;
            let slot = match key {
                Key::Add => &mut m.add,
                Key::Remove => &mut m.remove,
                Key::Replace => &mut m.replace,
            };
            if slot.is_some() {
                return Err(ModifierError::DuplicateKey(key.name().to_string()));
            }
            *slot = Some(values);
            any = true;
        }
        if !any {
            return Err(ModifierError::Empty);
        }
        Ok(m)
    }

    /// The JSON form: an object with `add`/`remove`/`replace` arrays, a plain array (replace),
    /// or a string holding any textual form.
    pub fn from_json(v: &Value) -> Result<Self, ModifierError> {
        match v {
            Value::Array(_) => Ok(ListModifier {
                replace: Some(json_strings(v, "replace")?),
                ..Default::default()
            }),
            Value::String(s) => Self::parse(s),
            Value::Object(obj) => {
                if obj.is_empty() {
                    return Err(ModifierError::Empty);
                }
                let mut m = ListModifier::default();
                for (k, val) in obj {
                    let key = Key::parse(k).ok_or_else(|| ModifierError::UnknownKey(k.clone()))?;
                    let slot = match key {
                        Key::Add => &mut m.add,
                        Key::Remove => &mut m.remove,
                        Key::Replace => &mut m.replace,
                    };
                    if slot.is_some() {
                        return Err(ModifierError::DuplicateKey(key.name().to_string()));
                    }
                    // A single string is a one-element list, as in PowerShell.
                    let values = match val {
                        Value::String(s) => vec![s.clone()],
                        other => json_strings(other, key.name())?,
                    };
                    if let Some(bad) = values.iter().find(|v| v.is_empty()) {
                        let _ = bad;
                        return Err(ModifierError::EmptyValue(key.name().to_string()));
                    }
                    *slot = Some(values);
                }
                Ok(m)
            }
            _ => Err(ModifierError::Json(
                "a list field takes an array, a {\"add\"|\"remove\"|\"replace\": [..]} object or a modifier string"
                    .to_string(),
            )),
        }
    }

    /// The JSON object form (only the keys that are set).
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        for (name, v) in [
            ("replace", &self.replace),
            ("add", &self.add),
            ("remove", &self.remove),
        ] {
            if let Some(values) = v {
                obj.insert(
                    name.to_string(),
                    Value::Array(values.iter().cloned().map(Value::String).collect()),
                );
            }
        }
        Value::Object(obj)
    }

    /// Applies the change: replace, then add, then remove.
    pub fn apply(&self, list: &mut Vec<String>) {
        if let Some(r) = &self.replace {
            list.clone_from(r);
        }
        if let Some(add) = &self.add {
            for v in add {
                if !list.contains(v) {
                    list.push(v.clone());
                }
            }
        }
        if let Some(remove) = &self.remove {
            list.retain(|v| !remove.contains(v));
        }
    }

    /// Applies the change to a copy of `list`.
    pub fn applied(&self, list: &[String]) -> Vec<String> {
        let mut out = list.to_vec();
        self.apply(&mut out);
        out
    }
}

fn json_strings(v: &Value, key: &str) -> Result<Vec<String>, ModifierError> {
    let Value::Array(items) = v else {
        return Err(ModifierError::Json(format!(
            "'{key}' takes an array of strings"
        )));
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(s.clone()),
            _ => Err(ModifierError::Json(format!(
                "'{key}' takes an array of strings, found {i}"
            ))),
        })
        .collect()
}

/// The key of a `key=...` clause when `s` starts with one (`add`, `remove`, `replace`).
fn first_key(s: &str) -> Option<Key> {
    let eq = s.find('=')?;
    let head = &s[..eq];
    // `"a=b"` quoted or `x,add=..` are values, not a key.
    if head.contains(['"', '\'', ',']) {
        return None;
    }
    Key::parse(head.trim())
}

/// Splits on any of `seps` where not inside quotes; yields (byte offset, piece).
fn split_outside_quotes<'a>(
    s: &'a str,
    seps: &[char],
    offset: usize,
) -> Result<Vec<(usize, &'a str)>, ModifierError> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote: Option<(char, usize)> = None;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some((q, _)) if c == q => {
                // A doubled quote is a literal quote character.
                if chars.peek().map(|&(_, n)| n) == Some(q) {
                    chars.next();
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some((c, i)),
            None if seps.contains(&c) => {
                out.push((start, &s[start..i]));
                start = i + c.len_utf8();
            }
            None => {}
        }
    }
    if let Some((_, at)) = quote {
        return Err(ModifierError::UnterminatedQuote(offset + at));
    }
    out.push((start, &s[start..]));
    Ok(out)
}

/// `"A", 'B', C` -> [A, B, C]. `offset` is where `s` starts in the input (for messages).
fn parse_values(s: &str, offset: usize, key: Key) -> Result<Vec<String>, ModifierError> {
    let mut values = Vec::new();
    if s.trim().is_empty() {
        // `replace=` clears the list; an empty add/remove is a mistake.
        return if key == Key::Replace {
            Ok(values)
        } else {
            Err(ModifierError::EmptyValue(key.name().to_string()))
        };
    }
    for (start, piece) in split_outside_quotes(s, &[','], offset)? {
        let lead = piece.len() - piece.trim_start().len();
        let p = piece.trim();
        let at = offset + start + lead;
        let value = match p.chars().next() {
            Some(q @ ('"' | '\'')) => unquote(p, q, at)?,
            Some(_) => {
                if let Some((i, ch)) = p
                    .char_indices()
                    .find(|&(_, c)| matches!(c, '"' | '\'' | '=' | '{' | '}' | '@'))
                {
                    return Err(ModifierError::Unexpected { ch, at: at + i });
                }
                p.to_string()
            }
            None => String::new(),
        };
        if value.is_empty() {
            return Err(ModifierError::EmptyValue(key.name().to_string()));
        }
        values.push(value);
    }
    Ok(values)
}

/// A quoted value; nothing may follow the closing quote.
fn unquote(p: &str, q: char, at: usize) -> Result<String, ModifierError> {
    let mut out = String::new();
    let mut chars = p.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == q {
            if chars.peek().map(|&(_, n)| n) == Some(q) {
                chars.next();
                out.push(q);
                continue;
            }
            if let Some((j, ch)) = chars.next() {
                let _ = i;
                return Err(ModifierError::Unexpected { ch, at: at + j });
            }
            return Ok(out);
        }
        out.push(c);
    }
    Err(ModifierError::UnterminatedQuote(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn l(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn powershell_literal_forms() {
        assert_eq!(
            ListModifier::parse(r#"@{add="Local"}"#).unwrap(),
            ListModifier::add(["Local"])
        );
        assert_eq!(
            ListModifier::parse(r#"@{Add="A","B"}"#).unwrap(),
            ListModifier::add(["A", "B"])
        );
        assert_eq!(
            ListModifier::parse(r#"@{REMOVE='X'}"#).unwrap(),
            ListModifier::remove(["X"])
        );
        assert_eq!(
            ListModifier::parse(r#"  @{ replace = "A" , 'B' }  "#).unwrap(),
            ListModifier::replace(["A", "B"])
        );
        let both = ListModifier::parse(r#"@{add="A"; remove="B"}"#).unwrap();
        assert_eq!(both.add, Some(l(&["A"])));
        assert_eq!(both.remove, Some(l(&["B"])));
        assert_eq!(both.replace, None);
        // New lines separate clauses too, as in a multi-line PowerShell hashtable.
        let nl = ListModifier::parse("@{\n  Add = \"A\"\n  Remove = \"B\"\n}").unwrap();
        assert_eq!(nl, both);
        // The shell ate the double quotes.
        assert_eq!(
            ListModifier::parse("@{add=Local}").unwrap(),
            ListModifier::add(["Local"])
        );
    }

    #[test]
    fn quoted_values_keep_separators_and_escapes() {
        assert_eq!(
            ListModifier::parse(r#"@{add="A,B; C"}"#).unwrap(),
            ListModifier::add(["A,B; C"])
        );
        assert_eq!(
            ListModifier::parse(r#"@{add="say ""hi"""}"#).unwrap(),
            ListModifier::add([r#"say "hi""#])
        );
        assert_eq!(
            ListModifier::parse(r#"@{add='it''s'}"#).unwrap(),
            ListModifier::add(["it's"])
        );
        assert_eq!(
            ListModifier::parse("@{add=\"PstnGateway:gw1\"}").unwrap(),
            ListModifier::add(["PstnGateway:gw1"])
        );
    }

    #[test]
    fn plain_and_bare_forms() {
        assert_eq!(
            ListModifier::parse("add=Local,PBX").unwrap(),
            ListModifier::add(["Local", "PBX"])
        );
        assert_eq!(
            ListModifier::parse("remove=X").unwrap(),
            ListModifier::remove(["X"])
        );
        assert_eq!(
            ListModifier::parse("Replace = A, B").unwrap(),
            ListModifier::replace(["A", "B"])
        );
        assert_eq!(
            ListModifier::parse("A,B").unwrap(),
            ListModifier::replace(["A", "B"])
        );
        assert_eq!(
            ListModifier::parse("Local").unwrap(),
            ListModifier::replace(["Local"])
        );
        let both = ListModifier::parse("add=A;remove=B").unwrap();
        assert_eq!(both.add, Some(l(&["A"])));
        assert_eq!(both.remove, Some(l(&["B"])));
        // `replace=` with nothing clears the list.
        assert_eq!(
            ListModifier::parse("replace=").unwrap(),
            ListModifier::replace(Vec::<String>::new())
        );
        assert_eq!(
            ListModifier::parse("@{replace=}")
                .unwrap()
                .applied(&l(&["A"])),
            Vec::<String>::new()
        );
        // Quoted bare values.
        assert_eq!(
            ListModifier::parse(r#""A","B""#).unwrap(),
            ListModifier::replace(["A", "B"])
        );
    }

    #[test]
    fn malformed_input_is_a_clear_error() {
        use ModifierError::*;
        let e = |s: &str| ListModifier::parse(s).unwrap_err();
        assert_eq!(e(""), Empty);
        assert_eq!(e("   "), Empty);
        assert_eq!(e("@{}"), Empty);
        assert_eq!(e("@{ ; }"), Empty);
        assert_eq!(e(r#"@{add="A""#), Unclosed);
        assert_eq!(e(r#"@{append="A"}"#), UnknownKey("append".into()));
        assert_eq!(e(r#"@{"A"}"#), MissingEquals("\"A\"".into()));
        assert_eq!(e(r#"@{add="A"; add="B"}"#), DuplicateKey("add".into()));
        assert_eq!(e(r#"@{add="A}"#), UnterminatedQuote(6));
        assert_eq!(e(r#"@{add=""}"#), EmptyValue("add".into()));
        assert_eq!(e(r#"@{add="A",,"B"}"#), EmptyValue("add".into()));
        assert_eq!(e("add="), EmptyValue("add".into()));
        assert_eq!(e("remove= , "), EmptyValue("remove".into()));
        assert_eq!(e("A,,B"), EmptyValue("replace".into()));
        assert!(matches!(e(r#"@{add="A"x}"#), Unexpected { ch: 'x', .. }));
        assert!(matches!(e(r#"@{add=A"B"}"#), Unexpected { ch: '"', .. }));
        assert!(matches!(e("a=b=c"), Unexpected { .. }));
        // Messages name the problem.
        assert!(e(r#"@{append="A"}"#).to_string().contains("append"));
        assert!(e("").to_string().contains("@{add="));
    }

    #[test]
    fn apply_semantics() {
        let base = l(&["A", "B"]);
        assert_eq!(
            ListModifier::add(["C", "A", "D", "C"]).applied(&base),
            l(&["A", "B", "C", "D"])
        );
        assert_eq!(ListModifier::remove(["A", "Z"]).applied(&base), l(&["B"]));
        assert_eq!(
            ListModifier::replace(["X", "Y"]).applied(&base),
            l(&["X", "Y"])
        );
        // replace, then add, then remove.
        let all = ListModifier {
            replace: Some(l(&["X", "Y"])),
            add: Some(l(&["Z", "X"])),
            remove: Some(l(&["Y"])),
        };
        assert_eq!(all.applied(&base), l(&["X", "Z"]));
        let add_remove_same = ListModifier::parse(r#"@{add="C"; remove="C"}"#).unwrap();
        assert_eq!(add_remove_same.applied(&base), base);
        // Removing every occurrence, even of a list that had duplicates.
        assert_eq!(
            ListModifier::remove(["A"]).applied(&l(&["A", "B", "A"])),
            l(&["B"])
        );
        assert_eq!(ListModifier::add(["A"]).applied(&[]), l(&["A"]));
    }

    #[test]
    fn json_forms() {
        let j = |v: Value| ListModifier::from_json(&v);
        assert_eq!(j(json!({"add": ["A"]})).unwrap(), ListModifier::add(["A"]));
        assert_eq!(
            j(json!({"Remove": ["X"]})).unwrap(),
            ListModifier::remove(["X"])
        );
        assert_eq!(
            j(json!({"replace": ["A", "B"]})).unwrap(),
            ListModifier::replace(["A", "B"])
        );
        assert_eq!(
            j(json!(["A", "B"])).unwrap(),
            ListModifier::replace(["A", "B"])
        );
        assert_eq!(j(json!({"add": "A"})).unwrap(), ListModifier::add(["A"]));
        assert_eq!(j(json!("@{add=\"A\"}")).unwrap(), ListModifier::add(["A"]));
        assert_eq!(j(json!({})).unwrap_err(), ModifierError::Empty);
        assert_eq!(
            j(json!({"append": ["A"]})).unwrap_err(),
            ModifierError::UnknownKey("append".into())
        );
        assert!(matches!(
            j(json!({"add": [1]})),
            Err(ModifierError::Json(_))
        ));
        assert!(matches!(j(json!(3)), Err(ModifierError::Json(_))));
        assert_eq!(
            j(json!({"add": [""]})).unwrap_err(),
            ModifierError::EmptyValue("add".into())
        );
        assert_eq!(
            j(json!({"add": ["A"], "ADD": ["B"]})).unwrap_err(),
            ModifierError::DuplicateKey("add".into())
        );
        // Round trip through the object form.
        let m = ListModifier::parse(r#"@{add="A"; remove="B"; replace="C"}"#).unwrap();
        assert_eq!(ListModifier::from_json(&m.to_json()).unwrap(), m);
    }
}
