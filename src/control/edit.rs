//! Changes to the configuration *document*, keeping the admin's comments and layout.
//!
//! The admin API edits the TOML text with `toml_edit` rather than re-serializing a `Config`:
//! only the touched key, array entry or table changes, everything else (comments, ordering,
//! quoting, blank lines) stays byte for byte. The edited text is then parsed and validated like
//! any file, so what runs is exactly what a restart would load.
//!
//! Objects are `[[trunk]]`-style array entries found by `identity`; both the array-of-tables
//! form and an inline `trunk = [{ .. }]` array are edited in place.

use serde_json::{Map, Value as Json};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, TableLike, Value};

use super::modifier::ListModifier;

/// Why an edit could not be made; the variant decides the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// 400
    #[error("{0}")]
    Invalid(String),
    /// 404
    #[error("{kind} '{identity}' not found")]
    NotFound { kind: String, identity: String },
    /// 409
    #[error("{kind} '{identity}' already exists")]
    Duplicate { kind: String, identity: String },
}

impl EditError {
    pub fn status(&self) -> u16 {
        match self {
            EditError::Invalid(_) => 400,
            EditError::NotFound { .. } => 404,
            EditError::Duplicate { .. } => 409,
        }
    }
}

fn invalid(m: impl Into<String>) -> EditError {
    EditError::Invalid(m.into())
}

/// Every entry of the array `array` (`trunk`, `voice_route`, ...), in file order.
fn entries_mut<'d>(
    doc: &'d mut DocumentMut,
    array: &str,
) -> Result<Vec<&'d mut dyn TableLike>, EditError> {
    match doc.get_mut(array) {
        None => Ok(Vec::new()),
        Some(Item::ArrayOfTables(aot)) => {
            Ok(aot.iter_mut().map(|t| t as &mut dyn TableLike).collect())
        }
        Some(Item::Value(Value::Array(arr))) => Ok(arr
            .iter_mut()
            .filter_map(|v| v.as_inline_table_mut())
            .map(|t| t as &mut dyn TableLike)
            .collect()),
        Some(_) => Err(invalid(format!(
            "'{array}' in the configuration file is not an array of tables"
        ))),
    }
}

fn identity_of(t: &dyn TableLike) -> Option<&str> {
    t.get("identity").and_then(|i| i.as_str())
}

/// True when an entry with this identity exists.
pub fn exists(doc: &mut DocumentMut, array: &str, identity: &str) -> Result<bool, EditError> {
    Ok(entries_mut(doc, array)?
        .into_iter()
        .any(|t| identity_of(t) == Some(identity)))
}

/// Appends a new entry built from `fields` (which must hold a string `identity`).
pub fn create(
    doc: &mut DocumentMut,
    array: &str,
    kind: &str,
    fields: &Map<String, Json>,
) -> Result<String, EditError> {
    let identity = match fields.get("identity") {
        Some(Json::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err(invalid(format!(
                "a new {kind} needs a non-empty \"identity\""
            )))
        }
    };
    if exists(doc, array, &identity)? {
        return Err(EditError::Duplicate {
            kind: kind.to_string(),
            identity,
        });
    }
    let mut table = Table::new();
    // identity first, then the other fields in the order given.
    table.insert("identity", Item::Value(Value::from(identity.as_str())));
    for (k, v) in fields {
        if k == "identity" || v.is_null() {
            continue;
        }
        let value = match ListModifier::from_json(v) {
            // A modifier on a new object applies to the empty list.
            Ok(m) if is_modifier_object(v) => string_array(&m.applied(&[])),
            _ => json_to_toml(v, k)?,
        };
        table.insert(k, Item::Value(value));
    }
    match doc.get_mut(array) {
        None => {
            let mut aot = toml_edit::ArrayOfTables::new();
            aot.push(table);
            doc.insert(array, Item::ArrayOfTables(aot));
        }
        Some(Item::ArrayOfTables(aot)) => aot.push(table),
        Some(Item::Value(Value::Array(arr))) => {
            arr.push(Value::InlineTable(table.into_inline_table()));
        }
        Some(_) => {
            return Err(invalid(format!(
                "'{array}' in the configuration file is not an array of tables"
            )))
        }
    }
    Ok(identity)
}

/// Changes some fields of an entry. A `null` value removes the key (back to its default); a
/// `{"add"|"remove"|"replace": [..]}` object (or a modifier string such as `@{add="A"}`) on a
/// list of strings edits the list in place.
pub fn set(
    doc: &mut DocumentMut,
    array: &str,
    kind: &str,
    identity: &str,
    fields: &Map<String, Json>,
) -> Result<(), EditError> {
    let entries = entries_mut(doc, array)?;
    let entry = entries
        .into_iter()
        .find(|t| identity_of(&**t) == Some(identity))
        .ok_or_else(|| EditError::NotFound {
            kind: kind.to_string(),
            identity: identity.to_string(),
        })?;
    set_fields(entry, fields, &["identity"])
}

/// Removes an entry.
pub fn delete(
    doc: &mut DocumentMut,
    array: &str,
    kind: &str,
    identity: &str,
) -> Result<(), EditError> {
    let not_found = || EditError::NotFound {
        kind: kind.to_string(),
        identity: identity.to_string(),
    };
    match doc.get_mut(array) {
        Some(Item::ArrayOfTables(aot)) => {
            let i = aot
                .iter()
                .position(|t| identity_of(t) == Some(identity))
                .ok_or_else(not_found)?;
            aot.remove(i);
            if aot.is_empty() {
                doc.remove(array);
            }
            Ok(())
        }
        Some(Item::Value(Value::Array(arr))) => {
            let i = arr
                .iter()
                .position(|v| {
                    v.as_inline_table()
                        .and_then(|t| t.get("identity"))
                        .and_then(|i| i.as_str())
                        == Some(identity)
                })
                .ok_or_else(not_found)?;
            arr.remove(i);
            Ok(())
        }
        _ => Err(not_found()),
    }
}

/// Changes keys of a plain table such as `[voice]` (created when missing).
pub fn set_table(
    doc: &mut DocumentMut,
    table: &str,
    fields: &Map<String, Json>,
) -> Result<(), EditError> {
    if doc.get(table).is_none() {
        doc.insert(table, Item::Table(Table::new()));
    }
    let t = doc
        .get_mut(table)
        .and_then(|i| i.as_table_like_mut())
        .ok_or_else(|| {
            invalid(format!(
                "'{table}' in the configuration file is not a table"
            ))
        })?;
    set_fields(t, fields, &[])
}

/// The strings of a list key of `[table]` (empty when absent).
pub fn table_list(doc: &DocumentMut, table: &str, key: &str) -> Vec<String> {
    doc.get(table)
        .and_then(|t| t.get(key))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn is_modifier_object(v: &Json) -> bool {
    match v {
        Json::Object(o) => {
            !o.is_empty()
                && o.keys().all(|k| {
                    ["add", "remove", "replace"]
                        .iter()
                        .any(|m| k.eq_ignore_ascii_case(m))
                })
        }
        Json::String(s) => s.trim_start().starts_with("@{"),
        _ => false,
    }
}

fn set_fields(
    t: &mut dyn TableLike,
    fields: &Map<String, Json>,
    immutable: &[&str],
) -> Result<(), EditError> {
    if fields.is_empty() {
        return Err(invalid("nothing to change: the request names no field"));
    }
    for (k, v) in fields {
        if immutable.contains(&k.as_str()) {
            let current = t.get(k).and_then(|i| i.as_str());
            if v.as_str() == current {
                continue;
            }
            return Err(invalid(format!("'{k}' cannot be changed")));
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        // An object on a list is a modifier (and a wrong key in it a modifier error).
        // A string on a list is modifier text (`add=A`, `@{remove="B"}`, `A,B`), as in ctl.
        let on_list = matches!(t.get(k), Some(Item::Value(Value::Array(_))))
            && (v.is_object() || v.is_string());
        if is_modifier_object(v) || on_list {
            let m = ListModifier::from_json(v).map_err(|e| invalid(format!("'{k}': {e}")))?;
            modify_list(t, k, &m)?;
            continue;
        }
        let new = json_to_toml(v, k)?;
        match t.get_mut(k) {
            Some(Item::Value(old)) => {
                // Keep the comment after the value and the spacing around it.
                let decor = old.decor().clone();
                *old = new;
                *old.decor_mut() = decor;
            }
            _ => {
                t.insert(k, Item::Value(new));
            }
        }
    }
    Ok(())
}

/// Applies a list modifier to the array at `key` in place: untouched elements keep their
/// formatting (a multi-line list stays multi-line).
fn modify_list(t: &mut dyn TableLike, key: &str, m: &ListModifier) -> Result<(), EditError> {
    if t.get(key).is_none() {
        t.insert(key, Item::Value(Value::Array(Array::new())));
    }
    let arr = match t.get_mut(key) {
        Some(Item::Value(Value::Array(a))) => a,
        _ => return Err(invalid(format!("'{key}' is not a list"))),
    };
    if arr.iter().any(|v| v.as_str().is_none()) {
        return Err(invalid(format!(
            "'{key}' is not a list of strings: give the whole new list instead of a modifier"
        )));
    }
    if let Some(r) = &m.replace {
        let decor = arr.decor().clone();
        *arr = Array::from_iter(r.iter().map(|s| s.as_str()));
        *arr.decor_mut() = decor;
    }
    if let Some(add) = &m.add {
        for v in add {
            if !arr.iter().any(|x| x.as_str() == Some(v)) {
                arr.push(v.as_str());
            }
        }
    }
    if let Some(remove) = &m.remove {
        arr.retain(|x| !x.as_str().is_some_and(|s| remove.iter().any(|r| r == s)));
    }
    Ok(())
}

fn string_array(values: &[String]) -> Value {
    Value::Array(Array::from_iter(values.iter().map(|s| s.as_str())))
}

/// JSON to a TOML value; objects become inline tables.
pub fn json_to_toml(v: &Json, key: &str) -> Result<Value, EditError> {
    Ok(match v {
        Json::Null => return Err(invalid(format!("'{key}': null is not allowed in a list"))),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(f) = n.as_f64() {
                Value::from(f)
            } else {
                return Err(invalid(format!("'{key}': number out of range")));
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => {
            let mut a = Array::new();
            for i in items {
                a.push(json_to_toml(i, key)?);
            }
            a.fmt();
            Value::Array(a)
        }
        Json::Object(o) => {
            let mut t = InlineTable::new();
            for (k, v) in o {
                if !v.is_null() {
                    t.insert(k, json_to_toml(v, k)?);
                }
            }
            t.fmt();
            Value::InlineTable(t)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DOC: &str = r#"# the relay
[voice]
pstn_usages = ["A", "B"] # global

# gateway
[[trunk]]
identity = "PstnGateway:gw1"   # the gateway
address = "127.0.0.11:5060"
pstn_usages = [
  "A",   # first
  "B",
]

[[trunk]]
identity = "PstnGateway:pbx1"
address = "127.0.0.21:5060"
"#;

    fn obj(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn set_keeps_comments_and_layout() {
        let mut doc: DocumentMut = DOC.parse().unwrap();
        set(
            &mut doc,
            "trunk",
            "trunk",
            "PstnGateway:gw1",
            &obj(json!({"pstn_usages": {"add": ["C"], "remove": ["A"]}, "max_early_dialogs": 5})),
        )
        .unwrap();
        let out = doc.to_string();
        assert!(out.starts_with("# the relay\n[voice]\npstn_usages = [\"A\", \"B\"] # global\n"));
        assert!(out.contains("identity = \"PstnGateway:gw1\"   # the gateway\n"));
        assert!(out.contains("  \"B\",") && out.contains("\"C\""), "{out}");
        assert!(!out.contains("\"A\",   # first"), "{out}");
        assert!(out.contains("max_early_dialogs = 5"));
        // The other trunk is untouched, byte for byte.
        assert!(out.ends_with(
            "[[trunk]]\nidentity = \"PstnGateway:pbx1\"\naddress = \"127.0.0.21:5060\"\n"
        ));
        let v: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(
            v["trunk"][0]["pstn_usages"],
            toml::Value::Array(vec!["B".into(), "C".into()])
        );
    }

    #[test]
    fn set_value_keeps_trailing_comment_and_null_removes() {
        let mut doc: DocumentMut = DOC.parse().unwrap();
        set_table(&mut doc, "voice", &obj(json!({"pstn_usages": ["X"]}))).unwrap();
        assert!(doc.to_string().contains("pstn_usages = [\"X\"] # global\n"));
        set_table(
            &mut doc,
            "voice",
            &obj(json!({"pstn_usages": "@{add=\"Y\"}"})),
        )
        .unwrap();
        assert_eq!(table_list(&doc, "voice", "pstn_usages"), ["X", "Y"]);
        let plain = obj(json!({"pstn_usages": "add=Z;remove=X"}));
        set_table(&mut doc, "voice", &plain).unwrap();
        assert_eq!(table_list(&doc, "voice", "pstn_usages"), ["Y", "Z"]);
        set(
            &mut doc,
            "trunk",
            "trunk",
            "PstnGateway:pbx1",
            &obj(json!({"address": null})),
        )
        .unwrap();
        assert!(!doc.to_string().contains("127.0.0.21"));
    }

    #[test]
    fn create_delete_and_errors() {
        let mut doc: DocumentMut = DOC.parse().unwrap();
        let err = create(
            &mut doc,
            "trunk",
            "trunk",
            &obj(json!({"identity": "PstnGateway:gw1"})),
        )
        .unwrap_err();
        assert_eq!(err.status(), 409);
        assert_eq!(
            create(&mut doc, "trunk", "trunk", &obj(json!({"address": "x"})))
                .unwrap_err()
                .status(),
            400
        );
        create(
            &mut doc,
            "voice_route",
            "voice route",
            &obj(
                json!({"identity": "R", "number_pattern": "^\\+1", "pstn_usages": {"add": ["A"]},
                        "priority": 2}),
            ),
        )
        .unwrap();
        let v: toml::Value = toml::from_str(&doc.to_string()).unwrap();
        assert_eq!(
            v["voice_route"][0]["number_pattern"].as_str(),
            Some("^\\+1")
        );
        assert_eq!(v["voice_route"][0]["pstn_usages"][0].as_str(), Some("A"));
        assert_eq!(v["voice_route"][0]["priority"].as_integer(), Some(2));
        let e = set(
            &mut doc,
            "voice_route",
            "voice route",
            "nope",
            &obj(json!({"priority": 1})),
        );
        assert_eq!(e.unwrap_err().status(), 404);
        let e = set(
            &mut doc,
            "voice_route",
            "voice route",
            "R",
            &obj(json!({"identity": "S"})),
        );
        assert_eq!(e.unwrap_err().status(), 400);
        let e = set(&mut doc, "voice_route", "voice route", "R", &obj(json!({})));
        assert_eq!(e.unwrap_err().status(), 400);
        let e = set(
            &mut doc,
            "voice_route",
            "voice route",
            "R",
            &obj(json!({"pstn_usages": {"append": ["A"]}})),
        );
        assert_eq!(e.unwrap_err().status(), 400);
        delete(&mut doc, "trunk", "trunk", "PstnGateway:gw1").unwrap();
        assert_eq!(
            delete(&mut doc, "trunk", "trunk", "PstnGateway:gw1")
                .unwrap_err()
                .status(),
            404
        );
        delete(&mut doc, "voice_route", "voice route", "R").unwrap();
        assert!(doc.get("voice_route").is_none());
        assert!(doc.to_string().contains("# the relay"));
    }

    #[test]
    fn inline_array_entries_are_edited_too() {
        let mut doc: DocumentMut =
            "translation_rule = [{ identity = \"S\", pattern = 'a', translation = 'b' }]\n"
                .parse()
                .unwrap();
        set(
            &mut doc,
            "translation_rule",
            "rule",
            "S",
            &obj(json!({"translation": "c"})),
        )
        .unwrap();
        create(
            &mut doc,
            "translation_rule",
            "rule",
            &obj(json!({"identity": "T", "pattern": "x", "translation": "y"})),
        )
        .unwrap();
        let v: toml::Value = toml::from_str(&doc.to_string()).unwrap();
        assert_eq!(v["translation_rule"][0]["translation"].as_str(), Some("c"));
        assert_eq!(v["translation_rule"][1]["identity"].as_str(), Some("T"));
        delete(&mut doc, "translation_rule", "rule", "S").unwrap();
        let v: toml::Value = toml::from_str(&doc.to_string()).unwrap();
        assert_eq!(v["translation_rule"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn modifier_on_non_string_list_is_refused() {
        let mut doc: DocumentMut =
            "[[dial_plan]]\nidentity = \"D\"\nnormalization_rules = [{ name = \"n\" }]\n"
                .parse()
                .unwrap();
        let e = set(
            &mut doc,
            "dial_plan",
            "dial plan",
            "D",
            &obj(json!({"normalization_rules": {"add": ["x"]}})),
        );
        assert_eq!(e.unwrap_err().status(), 400);
        set(
            &mut doc,
            "dial_plan",
            "dial plan",
            "D",
            &obj(json!({"normalization_rules": [{"name": "E164", "pattern": "^(\\+\\d+)$", "translation": "$1"}]})),
        )
        .unwrap();
        let v: toml::Value = toml::from_str(&doc.to_string()).unwrap();
        assert_eq!(
            v["dial_plan"][0]["normalization_rules"][0]["name"].as_str(),
            Some("E164")
        );
    }
}
