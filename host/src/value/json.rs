//! Component values as JSON and back, for command lines and files that speak JSON
//! (`wasmp pool` reads one JSON array of arguments per line and writes JSON results).
//!
//! The mapping follows the WIT type: records are objects, variants `{"case": payload}` (or
//! `"case"` without payload), enums strings, options `null` or the value, results
//! `{"ok": …}` / `{"err": …}`, flags arrays of names, tuples arrays.

use anyhow::{Result, bail};
use serde_json::{Map, Number, Value};
use wasmtime::component::{Type, Val};

use crate::runtime::signature::describe_type;

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
            let side = match name {
                "ok" => result.ok(),
                "err" => result.err(),
                _ => return Err(mismatch()),
            };
            let payload = match (side, payload) {
                (Some(ty), Some(payload)) => Some(Box::new(from_json(payload, &ty)?)),
                (None, None | Some(Value::Null)) => None,
                _ => return Err(mismatch()),
            };
            Val::Result(if name == "ok" {
                Ok(payload)
            } else {
                Err(payload)
            })
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

/// Converts a value to JSON (the inverse of [`from_json`]).
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
