//! Component values as bytes, for host-function calls across the process boundary.
//!
//! Not WAVE: wasm-wave's lexer recurses once per character in debug builds (a 256 KiB
//! string overflows a thread's stack), and the values come from an untrusted guest. Not
//! serde over a recursive value either: a worker could send nesting deep enough to overflow
//! the host's stack. Instead a value is a flat, pre-order list of tokens (postcard), and
//! decoding is driven by the WIT type the reader already knows, so it recurses only as deep
//! as the type and checks the value against it on the way; a length read from the bytes is
//! never trusted to size an allocation.

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use wasmtime::component::{Type, Val};

use crate::value::signature::describe_type;

/// One piece of a value, in pre-order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Token {
    Bool(bool),
    S8(i8),
    U8(u8),
    S16(i16),
    U16(u16),
    S32(i32),
    U32(u32),
    S64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    Char(char),
    String(String),
    /// A whole `list<u8>`, one length and one copy.
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A list or tuple of this many values, which follow.
    Seq(u32),
    /// A record of this many fields, each a [`Token::Field`] and its value.
    Record(u32),
    Field(String),
    /// A variant's case, and whether a payload follows.
    Case(String, bool),
    Enum(String),
    None,
    /// An option's value follows.
    Some,
    /// A result's side, and whether a payload follows.
    Ok(bool),
    Err(bool),
    Flags(Vec<String>),
}

/// Encodes `vals` (one call's arguments or results).
///
/// # Errors
///
/// For values that cannot cross: resources, futures, streams, maps.
pub(crate) fn encode(vals: &[Val]) -> Result<Vec<u8>> {
    let mut tokens = Vec::new();
    for val in vals {
        push(&mut tokens, val)?;
    }
    postcard::to_stdvec(&tokens).context("failed to encode values")
}

fn push(tokens: &mut Vec<Token>, val: &Val) -> Result<()> {
    let token = match val {
        Val::Bool(b) => Token::Bool(*b),
        Val::S8(n) => Token::S8(*n),
        Val::U8(n) => Token::U8(*n),
        Val::S16(n) => Token::S16(*n),
        Val::U16(n) => Token::U16(*n),
        Val::S32(n) => Token::S32(*n),
        Val::U32(n) => Token::U32(*n),
        Val::S64(n) => Token::S64(*n),
        Val::U64(n) => Token::U64(*n),
        Val::Float32(f) => Token::F32(*f),
        Val::Float64(f) => Token::F64(*f),
        Val::Char(c) => Token::Char(*c),
        Val::String(s) => Token::String(s.clone()),
        Val::List(items) if !items.is_empty() && items.iter().all(|v| matches!(v, Val::U8(_))) => {
            let bytes = items
                .iter()
                .map(|v| match v {
                    Val::U8(b) => *b,
                    _ => unreachable!("checked above"),
                })
                .collect();
            Token::Bytes(bytes)
        }
        Val::List(items) | Val::Tuple(items) => {
            tokens.push(Token::Seq(count(items.len())?));
            return items.iter().try_for_each(|item| push(tokens, item));
        }
        Val::Record(fields) => {
            tokens.push(Token::Record(count(fields.len())?));
            for (name, value) in fields {
                tokens.push(Token::Field(name.clone()));
                push(tokens, value)?;
            }
            return Ok(());
        }
        Val::Variant(case, payload) => {
            tokens.push(Token::Case(case.clone(), payload.is_some()));
            return payload.as_deref().map_or(Ok(()), |p| push(tokens, p));
        }
        Val::Enum(name) => Token::Enum(name.clone()),
        Val::Option(None) => Token::None,
        Val::Option(Some(value)) => {
            tokens.push(Token::Some);
            return push(tokens, value);
        }
        Val::Result(Ok(payload)) => {
            tokens.push(Token::Ok(payload.is_some()));
            return payload.as_deref().map_or(Ok(()), |p| push(tokens, p));
        }
        Val::Result(Err(payload)) => {
            tokens.push(Token::Err(payload.is_some()));
            return payload.as_deref().map_or(Ok(()), |p| push(tokens, p));
        }
        Val::Flags(names) => Token::Flags(names.clone()),
        other => bail!("{other:?} cannot cross to another process: only plain values can"),
    };
    tokens.push(token);
    Ok(())
}

fn count(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| anyhow!("a list of {len} values is too long"))
}

/// Decodes values of `types` from `bytes`, checking each against its type.
///
/// # Errors
///
/// Bytes that are not an encoding, or values that do not fit the types (the message says
/// which value and what was expected).
pub(crate) fn decode(bytes: &[u8], types: &[Type]) -> Result<Vec<Val>> {
    let tokens: Vec<Token> = postcard::from_bytes(bytes).context("malformed values")?;
    let mut reader = Reader {
        tokens: tokens.into_iter(),
    };
    let vals = types
        .iter()
        .enumerate()
        .map(|(i, ty)| reader.value(ty).with_context(|| format!("value {}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    if reader.tokens.next().is_some() {
        bail!("more values than the {} expected", types.len());
    }
    Ok(vals)
}

struct Reader {
    tokens: std::vec::IntoIter<Token>,
}

impl Reader {
    fn value(&mut self, ty: &Type) -> Result<Val> {
        let Some(token) = self.tokens.next() else {
            bail!("missing a value of type {}", describe_type(ty));
        };
        let mismatch = |token: &Token| anyhow!("expected {}, got {token:?}", describe_type(ty));
        Ok(match (ty, token) {
            (Type::Bool, Token::Bool(b)) => Val::Bool(b),
            (Type::S8, Token::S8(n)) => Val::S8(n),
            (Type::U8, Token::U8(n)) => Val::U8(n),
            (Type::S16, Token::S16(n)) => Val::S16(n),
            (Type::U16, Token::U16(n)) => Val::U16(n),
            (Type::S32, Token::S32(n)) => Val::S32(n),
            (Type::U32, Token::U32(n)) => Val::U32(n),
            (Type::S64, Token::S64(n)) => Val::S64(n),
            (Type::U64, Token::U64(n)) => Val::U64(n),
            (Type::Float32, Token::F32(f)) => Val::Float32(f),
            (Type::Float64, Token::F64(f)) => Val::Float64(f),
            (Type::Char, Token::Char(c)) => Val::Char(c),
            (Type::String, Token::String(s)) => Val::String(s),
            (Type::List(list), Token::Bytes(bytes)) if list.ty() == Type::U8 => {
                Val::List(bytes.into_iter().map(Val::U8).collect())
            }
            (Type::List(list), Token::Seq(n)) => {
                let elem = list.ty();
                Val::List(self.values(n, std::iter::repeat_n(&elem, n as usize))?)
            }
            (Type::Tuple(tuple), Token::Seq(n)) if n as usize == tuple.types().len() => {
                let types: Vec<Type> = tuple.types().collect();
                Val::Tuple(self.values(n, types.iter())?)
            }
            (Type::Record(record), Token::Record(n)) if n as usize == record.fields().len() => {
                let mut fields = Vec::with_capacity(n as usize);
                for field in record.fields() {
                    match self.tokens.next() {
                        Some(Token::Field(name)) if name == field.name => {}
                        other => bail!("expected record field {:?}, got {other:?}", field.name),
                    }
                    let value = self
                        .value(&field.ty)
                        .with_context(|| format!("field {:?}", field.name))?;
                    fields.push((field.name.to_string(), value));
                }
                Val::Record(fields)
            }
            (Type::Variant(variant), Token::Case(name, has_payload)) => {
                let Some(case) = variant.cases().find(|c| c.name == name) else {
                    bail!("{} has no case {name:?}", describe_type(ty));
                };
                let payload = match (case.ty, has_payload) {
                    (Some(ty), true) => Some(Box::new(self.value(&ty)?)),
                    (None, false) => None,
                    _ => bail!("case {name:?} of {}: wrong payload", describe_type(ty)),
                };
                Val::Variant(name, payload)
            }
            (Type::Enum(e), Token::Enum(name)) => {
                if !e.names().any(|n| n == name) {
                    bail!("{} has no case {name:?}", describe_type(ty));
                }
                Val::Enum(name)
            }
            (Type::Option(_), Token::None) => Val::Option(None),
            (Type::Option(option), Token::Some) => {
                Val::Option(Some(Box::new(self.value(&option.ty())?)))
            }
            (Type::Result(result), Token::Ok(has_payload)) => {
                Val::Result(Ok(self.payload(result.ok(), has_payload, "ok")?))
            }
            (Type::Result(result), Token::Err(has_payload)) => {
                Val::Result(Err(self.payload(result.err(), has_payload, "err")?))
            }
            (Type::Flags(flags), Token::Flags(names)) => {
                if let Some(unknown) = names.iter().find(|n| !flags.names().any(|f| f == *n)) {
                    bail!("{} has no flag {unknown:?}", describe_type(ty));
                }
                Val::Flags(names)
            }
            (_, token) => return Err(mismatch(&token)),
        })
    }

    /// `n` values of the given types; the capacity is not taken from the bytes on trust.
    fn values<'a>(&mut self, n: u32, types: impl Iterator<Item = &'a Type>) -> Result<Vec<Val>> {
        let mut vals = Vec::with_capacity((n as usize).min(self.tokens.len()));
        for ty in types {
            vals.push(self.value(ty)?);
        }
        Ok(vals)
    }

    fn payload(
        &mut self,
        ty: Option<Type>,
        has_payload: bool,
        side: &str,
    ) -> Result<Option<Box<Val>>> {
        match (ty, has_payload) {
            (Some(ty), true) => Ok(Some(Box::new(self.value(&ty)?))),
            (None, false) => Ok(None),
            _ => bail!("the {side} side of a result: wrong payload"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_string_decodes_on_a_small_stack() {
        let long = "k".repeat(4 << 20);
        let bytes = encode(&[Val::String(long.clone()), Val::Bool(true)]).unwrap();
        let decoded = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let one = decode(&bytes, &[Type::String]).map_err(|e| format!("{e:#}"));
                (one, decode(&bytes, &[Type::String, Type::Bool]).unwrap())
            })
            .unwrap()
            .join()
            .unwrap();
        // Two values were sent and one type given: refused, not truncated.
        assert!(decoded.0.unwrap_err().contains("more values"));
        assert_eq!(decoded.1, [Val::String(long), Val::Bool(true)]);
    }

    #[test]
    fn garbage_and_values_of_the_wrong_type_are_refused() {
        let bytes = postcard::to_stdvec(&vec![Token::Seq(u32::MAX)]).unwrap();
        assert!(decode(&bytes, &[Type::String]).is_err());
        assert!(decode(b"\xff\xff\xff", &[Type::Bool]).is_err());
        let wrong = encode(&[Val::U32(1)]).unwrap();
        let error = decode(&wrong, &[Type::String]).unwrap_err();
        assert!(
            format!("{error:#}").contains("expected string"),
            "{error:#}"
        );
    }

    proptest::proptest! {
        /// Whatever a worker sends, decoding it is a value or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = decode(&bytes, &[Type::String, Type::U32, Type::Bool, Type::Char]);
            let _ = decode(&bytes, &[]);
        }

        /// Scalars survive the trip.
        #[test]
        fn scalars_round_trip(n in proptest::num::i64::ANY, s in ".{0,64}", c in proptest::char::any()) {
            let vals = vec![Val::S64(n), Val::String(s), Val::Char(c)];
            let back = decode(&encode(&vals).unwrap(), &[Type::S64, Type::String, Type::Char]).unwrap();
            proptest::prop_assert_eq!(back, vals);
        }
    }
}
