//! Component values as JSON and back, for command lines and files that speak JSON
//! (`wasmp pool` reads one JSON array of arguments per line and writes JSON results).
//!
//! The mapping follows the WIT type: records are objects, variants `{"case": payload}` (or
//! `"case"` without payload), enums strings, options `null` or the value, results
//! `{"ok": …}` / `{"err": …}`, flags arrays of names, tuples arrays.

use anyhow::{Result, bail};
use serde_json::{Map, Number, Value};
use wasmtime::component::{Type, Val};

use crate::value::signature::describe_type;

/// Converts `json` to a value of type `ty`.
pub(crate) fn from_json(json: &Value, ty: &Type) -> Result<Val> {
    let mismatch = || anyhow::anyhow!("expected {}, got {json}", describe_type(ty));
    Ok(match ty {
        Type::Bool => Val::Bool(json.as_bool().ok_or_else(mismatch)?),
        Type::S8 => Val::S8(int(json, ty)?),
        Type::U8 => Val::U8(int(json, ty)?),
        Type::S16 => Val::S16(int(json, ty)?),
        Type::U16 => Val::U16(int(json, ty)?),
        Type::S32 => Val::S32(int(json, ty)?),
        Type::U32 => Val::U32(int(json, ty)?),
        Type::S64 => Val::S64(int(json, ty)?),
        Type::U64 => Val::U64(int(json, ty)?),
        Type::Float32 => Val::Float32(json.as_f64().ok_or_else(mismatch)? as f32),
        Type::Float64 => Val::Float64(json.as_f64().ok_or_else(mismatch)?),
        Type::Char => {
            let text = json.as_str().ok_or_else(mismatch)?;
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(mismatch()),
            }
        }
        Type::String => Val::String(json.as_str().ok_or_else(mismatch)?.to_string()),
        Type::List(list) => {
            let elem = list.ty();
            let items = json.as_array().ok_or_else(mismatch)?;
            Val::List(
                items
                    .iter()
                    .map(|item| from_json(item, &elem))
                    .collect::<Result<_>>()?,
            )
        }
        Type::Tuple(tuple) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            if items.len() != tuple.types().len() {
                return Err(mismatch());
            }
            Val::Tuple(
                items
                    .iter()
                    .zip(tuple.types())
                    .map(|(item, ty)| from_json(item, &ty))
                    .collect::<Result<_>>()?,
            )
        }
        Type::Record(record) => {
            let object = json.as_object().ok_or_else(mismatch)?;
            let mut fields = Vec::new();
            for field in record.fields() {
                let value = object
                    .get(field.name)
                    .or_else(|| object.get(&field.name.replace('-', "_")));
                let value = match (value, &field.ty) {
                    (Some(value), ty) => from_json(value, ty)?,
                    (None, Type::Option(_)) => Val::Option(None),
                    (None, _) => bail!("missing field {:?} in {json}", field.name),
                };
                fields.push((field.name.to_string(), value));
            }
            Val::Record(fields)
        }
        Type::Variant(variant) => {
            let (name, payload) = case(json).ok_or_else(mismatch)?;
            let Some(found) = variant.cases().find(|c| c.name == name) else {
                return Err(mismatch());
            };
            let payload = match (found.ty, payload) {
                (Some(ty), Some(payload)) => Some(Box::new(from_json(payload, &ty)?)),
                (None, None) => None,
                _ => return Err(mismatch()),
            };
            Val::Variant(name.to_string(), payload)
        }
        Type::Enum(e) => {
            let name = json.as_str().ok_or_else(mismatch)?;
            if !e.names().any(|n| n == name) {
                return Err(mismatch());
            }
            Val::Enum(name.to_string())
        }
        Type::Option(option) => match json {
            Value::Null => Val::Option(None),
            other => Val::Option(Some(Box::new(from_json(other, &option.ty())?))),
        },
        Type::Result(result) => {
            let (name, payload) = case(json).ok_or_else(mismatch)?;
            // serde's spelling of a Rust `Result` (`{"Ok": …}`) too: host functions'
            // typed form converts through serde.
            let is_ok = match name {
                "ok" | "Ok" => true,
                "err" | "Err" => false,
                _ => return Err(mismatch()),
            };
            let side = if is_ok { result.ok() } else { result.err() };
            let payload = match (side, payload) {
                (Some(ty), Some(payload)) => Some(Box::new(from_json(payload, &ty)?)),
                (None, None | Some(Value::Null)) => None,
                _ => return Err(mismatch()),
            };
            Val::Result(if is_ok { Ok(payload) } else { Err(payload) })
        }
        Type::Flags(flags) => {
            let names = json.as_array().ok_or_else(mismatch)?;
            let mut set = Vec::new();
            for name in names {
                let name = name.as_str().ok_or_else(mismatch)?;
                if !flags.names().any(|n| n == name) {
                    return Err(mismatch());
                }
                set.push(name.to_string());
            }
            Val::Flags(set)
        }
        other => bail!("{} values cannot be written in JSON", describe_type(other)),
    })
}

/// `"name"` or `{"name": payload}`.
fn case(json: &Value) -> Option<(&str, Option<&Value>)> {
    match json {
        Value::String(name) => Some((name, None)),
        Value::Object(object) if object.len() == 1 => {
            let (name, payload) = object.iter().next()?;
            Some((name, Some(payload)))
        }
        _ => None,
    }
}

fn int<T: TryFrom<i64> + TryFrom<u64>>(json: &Value, ty: &Type) -> Result<T> {
    let fits = match (json.as_i64(), json.as_u64()) {
        (_, Some(u)) => T::try_from(u).ok(),
        (Some(i), None) => T::try_from(i).ok(),
        _ => None,
    };
    fits.ok_or_else(|| anyhow::anyhow!("expected {}, got {json}", describe_type(ty)))
}

/// Converts a value to JSON (the inverse of [`Component::args_from_json`](crate::Component::args_from_json)).
pub fn val_to_json(val: &Val) -> Value {
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => Value::from(*n),
        Val::U8(n) => Value::from(*n),
        Val::S16(n) => Value::from(*n),
        Val::U16(n) => Value::from(*n),
        Val::S32(n) => Value::from(*n),
        Val::U32(n) => Value::from(*n),
        Val::S64(n) => Value::from(*n),
        Val::U64(n) => Value::from(*n),
        Val::Float32(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        Val::Float64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(val_to_json).collect())
        }
        Val::Map(pairs) => Value::Array(
            pairs
                .iter()
                .map(|(k, v)| Value::Array(vec![val_to_json(k), val_to_json(v)]))
                .collect(),
        ),
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), val_to_json(value)))
                .collect(),
        ),
        Val::Variant(name, payload) => match payload {
            None => Value::String(name.clone()),
            Some(payload) => single(name, val_to_json(payload)),
        },
        Val::Enum(name) => Value::String(name.clone()),
        Val::Option(None) => Value::Null,
        Val::Option(Some(value)) => val_to_json(value),
        Val::Result(Ok(payload)) => {
            single("ok", payload.as_deref().map_or(Value::Null, val_to_json))
        }
        Val::Result(Err(payload)) => {
            single("err", payload.as_deref().map_or(Value::Null, val_to_json))
        }
        Val::Flags(names) => Value::Array(names.iter().cloned().map(Value::String).collect()),
        other => Value::String(format!("{other:?}")),
    }
}

fn single(name: &str, value: Value) -> Value {
    let mut object = Map::new();
    object.insert(name.to_string(), value);
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;
    use wasmtime::component::types::ComponentItem;
    use wasmtime::{Config, Engine};

    use super::*;

    /// A component importing one function `t-NAME: func(x: T)` per type under test; named
    /// types (records, variants, enums, flags, resources) are imported, as the component
    /// model requires.
    const TYPES: &str = r#"(component
        (type $person' (record (field "first-name" string) (field "age" u8)
                               (field "nick" (option string))))
        (import "person" (type $person (eq $person')))
        (type $shape' (variant (case "none") (case "num" u32)))
        (import "shape" (type $shape (eq $shape')))
        (type $colour' (enum "red" "green"))
        (import "colour" (type $colour (eq $colour')))
        (type $access' (flags "read" "write"))
        (import "access" (type $access (eq $access')))
        (import "handle" (type $handle (sub resource)))
        (import "t-bool" (func (param "x" bool)))
        (import "t-s8" (func (param "x" s8)))
        (import "t-u8" (func (param "x" u8)))
        (import "t-s16" (func (param "x" s16)))
        (import "t-u16" (func (param "x" u16)))
        (import "t-s32" (func (param "x" s32)))
        (import "t-u32" (func (param "x" u32)))
        (import "t-s64" (func (param "x" s64)))
        (import "t-u64" (func (param "x" u64)))
        (import "t-f32" (func (param "x" f32)))
        (import "t-f64" (func (param "x" f64)))
        (import "t-char" (func (param "x" char)))
        (import "t-string" (func (param "x" string)))
        (import "t-list" (func (param "x" (list u32))))
        (import "t-option" (func (param "x" (option u32))))
        (import "t-result" (func (param "x" (result u32 (error string)))))
        (import "t-bare-result" (func (param "x" (result (error string)))))
        (import "t-tuple" (func (param "x" (tuple u8 string))))
        (import "t-record" (func (param "x" $person)))
        (import "t-variant" (func (param "x" $shape)))
        (import "t-enum" (func (param "x" $colour)))
        (import "t-flags" (func (param "x" $access)))
        (import "t-resource" (func (param "x" (own $handle))))
    )"#;

    /// The types of [`TYPES`], by name (`"u8"`, `"record"`, …).
    fn types() -> HashMap<String, Type> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let bytes = wat::parse_str(TYPES).unwrap();
        let component = wasmtime::component::Component::new(&engine, bytes).unwrap();
        component
            .component_type()
            .imports(&engine)
            .filter_map(|(name, item)| match item.ty {
                ComponentItem::ComponentFunc(func) => {
                    let (_, ty) = func.params().next()?;
                    Some((name.strip_prefix("t-")?.to_string(), ty))
                }
                _ => None,
            })
            .collect()
    }

    /// Converts `json` to the type named `ty`, or says why not.
    fn convert(types: &HashMap<String, Type>, json: Value, ty: &str) -> Result<Val, String> {
        from_json(&json, &types[ty]).map_err(|e| e.to_string())
    }

    #[test]
    fn integers_are_checked_against_the_range_of_their_width() {
        let t = types();
        assert_eq!(convert(&t, json!(-128), "s8"), Ok(Val::S8(-128)));
        assert_eq!(convert(&t, json!(127), "s8"), Ok(Val::S8(127)));
        assert_eq!(
            convert(&t, json!(128), "s8"),
            Err("expected s8, got 128".into())
        );
        assert_eq!(convert(&t, json!(255), "u8"), Ok(Val::U8(255)));
        assert_eq!(
            convert(&t, json!(256), "u8"),
            Err("expected u8, got 256".into())
        );
        assert_eq!(
            convert(&t, json!(-1), "u8"),
            Err("expected u8, got -1".into())
        );
        assert_eq!(convert(&t, json!(-32768), "s16"), Ok(Val::S16(-32768)));
        assert!(convert(&t, json!(32768), "s16").is_err());
        assert_eq!(convert(&t, json!(65535), "u16"), Ok(Val::U16(65535)));
        assert!(convert(&t, json!(65536), "u16").is_err());
        assert_eq!(convert(&t, json!(i32::MIN), "s32"), Ok(Val::S32(i32::MIN)));
        assert!(convert(&t, json!(i64::from(i32::MAX) + 1), "s32").is_err());
        assert_eq!(convert(&t, json!(u32::MAX), "u32"), Ok(Val::U32(u32::MAX)));
        assert!(convert(&t, json!(u64::from(u32::MAX) + 1), "u32").is_err());
        assert_eq!(convert(&t, json!(i64::MIN), "s64"), Ok(Val::S64(i64::MIN)));
        assert_eq!(
            convert(&t, json!(u64::MAX), "s64"),
            Err(format!("expected s64, got {}", u64::MAX))
        );
        assert_eq!(convert(&t, json!(u64::MAX), "u64"), Ok(Val::U64(u64::MAX)));
        assert_eq!(
            convert(&t, json!(-1), "u64"),
            Err("expected u64, got -1".into())
        );
    }

    #[test]
    fn integers_refuse_fractions_strings_and_other_values() {
        let t = types();
        assert_eq!(
            convert(&t, json!(1.5), "u32"),
            Err("expected u32, got 1.5".into())
        );
        assert_eq!(
            convert(&t, json!("1"), "u32"),
            Err(r#"expected u32, got "1""#.into())
        );
        assert_eq!(
            convert(&t, json!(null), "s64"),
            Err("expected s64, got null".into())
        );
    }

    #[test]
    fn floats_take_any_json_number() {
        let t = types();
        assert_eq!(convert(&t, json!(1.5), "f64"), Ok(Val::Float64(1.5)));
        assert_eq!(convert(&t, json!(2), "f64"), Ok(Val::Float64(2.0)));
        assert_eq!(convert(&t, json!(-0.25), "f32"), Ok(Val::Float32(-0.25)));
        assert_eq!(
            convert(&t, json!("1.5"), "f32"),
            Err(r#"expected f32, got "1.5""#.into())
        );
    }

    #[test]
    fn bools_are_json_booleans_only() {
        let t = types();
        assert_eq!(convert(&t, json!(true), "bool"), Ok(Val::Bool(true)));
        assert_eq!(
            convert(&t, json!(1), "bool"),
            Err("expected bool, got 1".into())
        );
    }

    #[test]
    fn a_char_is_a_string_of_exactly_one_character() {
        let t = types();
        assert_eq!(convert(&t, json!("é"), "char"), Ok(Val::Char('é')));
        for wrong in [json!("ab"), json!(""), json!(97)] {
            assert_eq!(
                convert(&t, wrong.clone(), "char"),
                Err(format!("expected char, got {wrong}"))
            );
        }
    }

    #[test]
    fn strings_are_json_strings_only() {
        let t = types();
        assert_eq!(
            convert(&t, json!("hi"), "string"),
            Ok(Val::String("hi".into()))
        );
        assert_eq!(
            convert(&t, json!(5), "string"),
            Err("expected string, got 5".into())
        );
    }

    #[test]
    fn lists_are_arrays_and_each_element_is_checked() {
        let t = types();
        assert_eq!(
            convert(&t, json!([1, 2]), "list"),
            Ok(Val::List(vec![Val::U32(1), Val::U32(2)]))
        );
        assert_eq!(convert(&t, json!([]), "list"), Ok(Val::List(vec![])));
        assert_eq!(
            convert(&t, json!([1, -1]), "list"),
            Err("expected u32, got -1".into())
        );
        assert_eq!(
            convert(&t, json!({"a": 1}), "list"),
            Err(r#"expected list<u32>, got {"a":1}"#.into())
        );
    }

    #[test]
    fn options_are_null_or_the_value() {
        let t = types();
        assert_eq!(convert(&t, json!(null), "option"), Ok(Val::Option(None)));
        assert_eq!(
            convert(&t, json!(3), "option"),
            Ok(Val::Option(Some(Box::new(Val::U32(3)))))
        );
        assert_eq!(
            convert(&t, json!("3"), "option"),
            Err(r#"expected u32, got "3""#.into())
        );
    }

    #[test]
    fn results_are_an_ok_or_err_object_or_a_bare_case_without_payload() {
        let t = types();
        assert_eq!(
            convert(&t, json!({"ok": 1}), "result"),
            Ok(Val::Result(Ok(Some(Box::new(Val::U32(1))))))
        );
        assert_eq!(
            convert(&t, json!({"err": "bad"}), "result"),
            Ok(Val::Result(Err(Some(Box::new(Val::String("bad".into()))))))
        );
        for wrong in [
            json!({"maybe": 1}),
            json!("ok"),
            json!({"ok": 1, "err": "x"}),
        ] {
            assert_eq!(
                convert(&t, wrong.clone(), "result"),
                Err(format!("expected result<u32, string>, got {wrong}"))
            );
        }
        // Without an ok payload: "ok", or {"ok": null}; an ok payload is refused.
        assert_eq!(
            convert(&t, json!("ok"), "bare-result"),
            Ok(Val::Result(Ok(None)))
        );
        assert_eq!(
            convert(&t, json!({"ok": null}), "bare-result"),
            Ok(Val::Result(Ok(None)))
        );
        assert_eq!(
            convert(&t, json!({"ok": 1}), "bare-result"),
            Err(r#"expected result<_, string>, got {"ok":1}"#.into())
        );
    }

    #[test]
    fn tuples_are_arrays_of_exactly_their_length() {
        let t = types();
        assert_eq!(
            convert(&t, json!([1, "a"]), "tuple"),
            Ok(Val::Tuple(vec![Val::U8(1), Val::String("a".into())]))
        );
        for wrong in [json!([1]), json!([1, "a", 2]), json!("1a")] {
            assert_eq!(
                convert(&t, wrong.clone(), "tuple"),
                Err(format!("expected tuple<u8, string>, got {wrong}"))
            );
        }
        assert_eq!(
            convert(&t, json!([1, 2]), "tuple"),
            Err("expected string, got 2".into())
        );
    }

    #[test]
    fn records_are_objects_with_kebab_or_snake_case_keys_and_options_may_be_left_out() {
        let t = types();
        let ada = Val::Record(vec![
            ("first-name".into(), Val::String("Ada".into())),
            ("age".into(), Val::U8(36)),
            ("nick".into(), Val::Option(None)),
        ]);
        assert_eq!(
            convert(&t, json!({"first-name": "Ada", "age": 36}), "record"),
            Ok(ada.clone())
        );
        assert_eq!(
            convert(
                &t,
                json!({"first_name": "Ada", "age": 36, "nick": null}),
                "record"
            ),
            Ok(ada)
        );
        assert_eq!(
            convert(&t, json!({"first-name": "Ada"}), "record"),
            Err(r#"missing field "age" in {"first-name":"Ada"}"#.into())
        );
        assert_eq!(
            convert(&t, json!({"first-name": "Ada", "age": 300}), "record"),
            Err("expected u8, got 300".into())
        );
        assert_eq!(
            convert(&t, json!(["Ada", 36]), "record"),
            Err(
                r#"expected record { first-name: string, age: u8, nick: option<string> }, got ["Ada",36]"#
                    .into()
            )
        );
    }

    #[test]
    fn variants_are_a_case_name_or_a_one_key_object_with_the_payload() {
        let t = types();
        assert_eq!(
            convert(&t, json!("none"), "variant"),
            Ok(Val::Variant("none".into(), None))
        );
        assert_eq!(
            convert(&t, json!({"num": 4}), "variant"),
            Ok(Val::Variant("num".into(), Some(Box::new(Val::U32(4)))))
        );
        for wrong in [json!("num"), json!({"none": 1}), json!("other"), json!(1)] {
            assert_eq!(
                convert(&t, wrong.clone(), "variant"),
                Err(format!(
                    "expected variant {{ none, num(u32) }}, got {wrong}"
                ))
            );
        }
    }

    #[test]
    fn enums_are_one_of_their_names() {
        let t = types();
        assert_eq!(
            convert(&t, json!("green"), "enum"),
            Ok(Val::Enum("green".into()))
        );
        for wrong in [json!("blue"), json!(0)] {
            assert_eq!(
                convert(&t, wrong.clone(), "enum"),
                Err(format!("expected enum {{ red, green }}, got {wrong}"))
            );
        }
    }

    #[test]
    fn flags_are_an_array_of_their_names() {
        let t = types();
        assert_eq!(
            convert(&t, json!(["write", "read"]), "flags"),
            Ok(Val::Flags(vec!["write".into(), "read".into()]))
        );
        assert_eq!(convert(&t, json!([]), "flags"), Ok(Val::Flags(vec![])));
        for wrong in [json!(["exec"]), json!([1]), json!("read")] {
            assert_eq!(
                convert(&t, wrong.clone(), "flags"),
                Err(format!("expected flags {{ read, write }}, got {wrong}"))
            );
        }
    }

    #[test]
    fn resources_cannot_be_written_in_json() {
        let t = types();
        let error = convert(&t, json!(1), "resource").unwrap_err();
        assert!(
            error.ends_with("values cannot be written in JSON"),
            "{error}"
        );
    }

    #[test]
    fn every_converted_value_turns_back_into_the_same_json() {
        let t = types();
        for (json, ty) in [
            (json!(-5), "s8"),
            (json!(1.5), "f64"),
            (json!("é"), "char"),
            (json!([1, 2]), "list"),
            (json!(null), "option"),
            (json!({"err": "bad"}), "result"),
            (json!([1, "a"]), "tuple"),
            (
                json!({"first-name": "Ada", "age": 36, "nick": "A"}),
                "record",
            ),
            (json!({"num": 4}), "variant"),
            (json!("red"), "enum"),
            (json!(["read"]), "flags"),
        ] {
            let val = convert(&t, json.clone(), ty).unwrap();
            assert_eq!(val_to_json(&val), json, "{ty}");
        }
    }
}
