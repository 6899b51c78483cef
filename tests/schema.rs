//! The event contract in the repository (docs/events.md and the JSON
//! Schemas in docs/schema/) against the decoder: every documented field is
//! one the decoder reads and type-checks, every required field is enforced
//! by both, every value set agrees, and every example decodes and matches
//! its schema.

use std::path::PathBuf;

use serde_json::{json, Map, Value};
use warden::ingest::decode::{decode_str, problems, DecodeErrorKind, FIELDS};

const KINDS: [&str; 3] = ["tool_call", "prompt", "tool_result"];

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn schema(kind: &str) -> Value {
    let path = repo(&format!("docs/schema/{kind}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::new(schema).expect("a valid JSON Schema")
}

fn properties(schema: &Value) -> &Map<String, Value> {
    schema["properties"].as_object().expect("properties")
}

fn required(schema: &Value) -> Vec<&str> {
    schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// The first example of a schema: a valid event to vary field by field.
fn base(schema: &Value) -> Map<String, Value> {
    schema["examples"][0]
        .as_object()
        .expect("an example")
        .clone()
}

fn decodes(event: &Map<String, Value>) -> Result<(), String> {
    let text = Value::Object(event.clone()).to_string();
    decode_str(&text).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn schemas_document_exactly_the_fields_the_decoder_reads() {
    let mut documented: Vec<String> = KINDS
        .iter()
        .flat_map(|k| properties(&schema(k)).keys().cloned().collect::<Vec<_>>())
        .collect();
    documented.sort();
    documented.dedup();
    let mut read: Vec<String> = FIELDS.iter().map(|f| f.to_string()).collect();
    read.sort();
    assert_eq!(documented, read);
}

#[test]
fn every_documented_field_is_accepted_and_type_checked() {
    for kind in KINDS {
        let s = schema(kind);
        let v = validator(&s);
        for (field, prop) in properties(&s) {
            let example = prop["examples"][0].clone();
            assert!(!example.is_null(), "{kind}.{field} has no example");
            let mut ev = base(&s);
            ev.insert(field.clone(), example.clone());
            let value = Value::Object(ev.clone());
            assert!(
                v.is_valid(&value),
                "{kind}.{field}: {example} fails the schema"
            );
            decodes(&ev).unwrap_or_else(|e| panic!("{kind}.{field}: {example}: {e}"));
            // A value of the wrong type is refused by both, naming the field.
            ev.insert(field.clone(), json!(12345));
            assert!(!v.is_valid(&Value::Object(ev.clone())), "{kind}.{field}");
            let text = Value::Object(ev).to_string();
            let e = decode_str(&text).expect_err(field);
            assert_eq!(e.field, Some(field_name(field)), "{kind}.{field}: {e}");
        }
    }
}

/// `FIELDS` holds `&'static str`s; find the one naming `field`.
fn field_name(field: &str) -> &'static str {
    FIELDS.iter().find(|f| **f == field).copied().expect(field)
}

#[test]
fn every_required_field_is_enforced_by_both() {
    for kind in KINDS {
        let s = schema(kind);
        let v = validator(&s);
        let required = required(&s);
        assert!(required.contains(&"event_id") && required.contains(&"ts"));
        for field in &required {
            let mut ev = base(&s);
            ev.remove(*field);
            assert!(!v.is_valid(&Value::Object(ev.clone())), "{kind}: {field}");
            if *field == "kind" {
                // Without `kind` an event is a tool call, by the contract.
                continue;
            }
            let text = Value::Object(ev.clone()).to_string();
            let e = decode_str(&text).expect_err(field);
            assert_eq!(
                (e.kind, e.field),
                (DecodeErrorKind::MissingField, Some(field_name(field))),
                "{kind}: {e}"
            );
            // Empty counts as missing, in both.
            ev.insert(field.to_string(), json!(""));
            assert!(!v.is_valid(&Value::Object(ev.clone())), "{kind}: {field}");
            assert!(decodes(&ev).is_err(), "{kind}: empty {field}");
        }
        // Optional fields may be left out, all at once.
        let mut ev = base(&s);
        ev.retain(|k, _| required.contains(&k.as_str()));
        decodes(&ev).unwrap_or_else(|e| panic!("{kind} minimal: {e}"));
        assert!(v.is_valid(&Value::Object(ev)));
    }
}

#[test]
fn value_sets_agree() {
    for kind in KINDS {
        let s = schema(kind);
        let v = validator(&s);
        for (field, prop) in properties(&s) {
            let Some(values) = prop["enum"].as_array() else {
                continue;
            };
            for value in values {
                let mut ev = base(&s);
                ev.insert(field.clone(), value.clone());
                assert!(v.is_valid(&Value::Object(ev.clone())));
                decodes(&ev).unwrap_or_else(|e| panic!("{kind}.{field}={value}: {e}"));
            }
            let mut ev = base(&s);
            ev.insert(field.clone(), json!("fly"));
            assert!(!v.is_valid(&Value::Object(ev.clone())));
            let text = Value::Object(ev).to_string();
            let e = decode_str(&text).expect_err(field);
            assert_eq!(
                (e.kind, e.field),
                (DecodeErrorKind::BadValue, Some(field_name(field)))
            );
        }
    }
}

#[test]
fn unknown_fields_are_ignored_by_both() {
    for kind in KINDS {
        let s = schema(kind);
        let mut ev = base(&s);
        ev.insert("x_runtime_specific".into(), json!({"a": [1, 2]}));
        assert!(validator(&s).is_valid(&Value::Object(ev.clone())));
        decodes(&ev).unwrap();
    }
}

/// Every line of every ```json block of docs/events.md is an event that
/// decodes and matches the schema of its kind; every kind has an example.
#[test]
fn the_documented_examples_decode_and_match_their_schema() {
    let doc = std::fs::read_to_string(repo("docs/events.md")).unwrap();
    let mut seen = Vec::new();
    let mut in_json = false;
    for line in doc.lines() {
        match line.trim() {
            "```json" => in_json = true,
            "```" => in_json = false,
            l if in_json && !l.is_empty() => {
                let ev: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
                let kind = ev["kind"].as_str().unwrap_or("tool_call").to_owned();
                let s = schema(&kind);
                let v = validator(&s);
                let errors: Vec<String> = v.iter_errors(&ev).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{l}: {errors:?}");
                assert!(problems(l.as_bytes(), 65536).is_empty(), "{l}");
                seen.push(kind);
            }
            _ => {}
        }
    }
    for kind in KINDS {
        assert!(seen.iter().any(|k| k == kind), "no example of {kind}");
        for ex in schema(kind)["examples"].as_array().unwrap() {
            assert!(validator(&schema(kind)).is_valid(ex), "{ex}");
            assert!(decode_str(&ex.to_string()).is_ok(), "{ex}");
        }
    }
}

/// The tables of docs/events.md name the same fields as the schemas.
#[test]
fn the_documented_tables_name_every_field() {
    let doc = std::fs::read_to_string(repo("docs/events.md")).unwrap();
    let mut in_tables: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|f| !f.contains('.'))
        .collect();
    in_tables.sort();
    in_tables.dedup();
    let mut read: Vec<&str> = FIELDS.to_vec();
    read.sort();
    assert_eq!(in_tables, read);
}

/// The committed replay data is what the contract describes.
#[test]
fn replay_events_match_their_schema() {
    use std::io::BufRead;
    let f = std::fs::File::open(repo("replay-data/seed-11/test.jsonl.gz")).unwrap();
    let r = std::io::BufReader::new(flate2::read::GzDecoder::new(f));
    let validators: Vec<(&str, jsonschema::Validator)> =
        KINDS.iter().map(|k| (*k, validator(&schema(k)))).collect();
    for line in r.lines().take(3000) {
        let line = line.unwrap();
        let ev: Value = serde_json::from_str(&line).unwrap();
        let kind = ev["kind"].as_str().unwrap_or("tool_call");
        let (_, v) = validators.iter().find(|(k, _)| *k == kind).unwrap();
        assert!(v.is_valid(&ev), "{line}");
    }
}
