//! Component-model values out into Rust types: the typed side of a result
//! ([`AsyncResult::get_as`](crate::AsyncResult::get_as)), so that callers need not match on
//! [`Val`] for the common shapes.

use std::fmt;

use wasmtime::component::Val;

/// A value did not have the shape the caller asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMismatch {
    /// The Rust type asked for.
    pub expected: String,
    /// What the value was, in WIT terms (`u32`, `list`, `record`, …) or a short rendering.
    pub found: String,
}

impl fmt::Display for TypeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, found {}", self.expected, self.found)
    }
}

impl std::error::Error for TypeMismatch {}

fn mismatch<T>(val: &Val) -> TypeMismatch {
    TypeMismatch {
        expected: rust_name::<T>(),
        found: kind(val).to_string(),
    }
}

/// `T`'s name as written in code: `Vec<Option<String>>`, not
/// `alloc::vec::Vec<core::option::Option<alloc::string::String>>`.
fn rust_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let mut name = String::with_capacity(full.len());
    let mut path = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            path.push(c);
        } else {
            name.push_str(path.rsplit("::").next().unwrap_or_default());
            path.clear();
            name.push(c);
        }
    }
    name.push_str(path.rsplit("::").next().unwrap_or_default());
    name
}

/// The WIT name of a value's kind, for mismatch messages.
fn kind(val: &Val) -> &'static str {
    match val {
        Val::Bool(_) => "bool",
        Val::S8(_) => "s8",
        Val::U8(_) => "u8",
        Val::S16(_) => "s16",
        Val::U16(_) => "u16",
        Val::S32(_) => "s32",
        Val::U32(_) => "u32",
        Val::S64(_) => "s64",
        Val::U64(_) => "u64",
        Val::Float32(_) => "f32",
        Val::Float64(_) => "f64",
        Val::Char(_) => "char",
        Val::String(_) => "string",
        Val::List(_) => "list",
        Val::FixedLengthList(_) => "fixed-length list",
        Val::Map(_) => "map",
        Val::Record(_) => "record",
        Val::Tuple(_) => "tuple",
        Val::Variant(..) => "variant",
        Val::Enum(_) => "enum",
        Val::Option(_) => "option",
        Val::Result(_) => "result",
        Val::Flags(_) => "flags",
        Val::Resource(_) => "resource",
        _ => "an async value",
    }
}

/// Converts a component-model [`Val`] into a Rust value: the inverse of
/// [`IntoVal`](crate::IntoVal).
///
/// Implemented for `bool`, `char`, the integer and float types (exactly: a `u32` result is
/// not an `i64`), `String`, `Vec<T>`, `Option<T>`, `Result<T, E>` (a WIT `result` with
/// payloads; `()` for a missing one), tuples up to six, `()` and `Val` itself (for records,
/// variants and other shapes).
pub trait FromVal: Sized {
    /// The value as `Self`, or why it is not one.
    ///
    /// # Errors
    ///
    /// [`TypeMismatch`] when the value has another shape.
    fn from_val(val: &Val) -> Result<Self, TypeMismatch>;
}

impl FromVal for Val {
    fn from_val(val: &Val) -> Result<Self, TypeMismatch> {
        Ok(val.clone())
    }
}

macro_rules! scalar {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl FromVal for $ty {
            fn from_val(val: &Val) -> Result<Self, TypeMismatch> {
                match val {
                    Val::$variant(v) => Ok(*v),
                    other => Err(mismatch::<$ty>(other)),
                }
            }
        })*
    };
}

scalar! {
    bool => Bool, char => Char,
    i8 => S8, u8 => U8, i16 => S16, u16 => U16, i32 => S32, u32 => U32, i64 => S64, u64 => U64,
    f32 => Float32, f64 => Float64,
}

impl FromVal for String {
    fn from_val(val: &Val) -> Result<Self, TypeMismatch> {
        match val {
            Val::String(s) => Ok(s.clone()),
            other => Err(mismatch::<String>(other)),
        }
    }
}

impl<T: FromVal> FromVal for Vec<T> {
    fn from_val(val: &Val) -> Result<Self, TypeMismatch> {
        match val {
            Val::List(items) | Val::FixedLengthList(items) => {
                items.iter().map(T::from_val).collect()
            }
            other => Err(mismatch::<Vec<T>>(other)),
        }
    }
}

impl<T: FromVal> FromVal for Option<T> {
    fn from_val(val: &Val) -> Result<Self, TypeMismatch> {
        match val {
            Val::Option(inner) => inner.as_deref().map(T::from_val).transpose(),
            other => Err(mismatch::<Option<T>>(other)),
        }
    }
}

impl<T: FromVal, E: FromVal> FromVal for Result<T, E> {
    fn from_val(val: &Val) -> Result<Self, TypeMismatch> {
        // A payload-less arm reads as the empty tuple, so `()` matches it.
        let unit = Val::Tuple(Vec::new());
        match val {
            Val::Result(Ok(ok)) => Ok(Ok(T::from_val(ok.as_deref().unwrap_or(&unit))?)),
            Val::Result(Err(err)) => Ok(Err(E::from_val(err.as_deref().unwrap_or(&unit))?)),
            other => Err(mismatch::<Result<T, E>>(other)),
        }
    }
}

macro_rules! tuple {
    ($($name:ident),*) => {
        impl<$($name: FromVal),*> FromVal for ($($name,)*) {
            #[allow(non_snake_case, reason = "the type parameters name the elements")]
            fn from_val(val: &Val) -> Result<Self, TypeMismatch> {
                const NAMES: &[&str] = &[$(stringify!($name)),*];
                const LEN: usize = NAMES.len();
                match val {
                    Val::Tuple(items) if items.len() == LEN => {
                        let mut items = items.iter();
                        $(let $name = $name::from_val(items.next().expect("length checked"))?;)*
                        Ok(($($name,)*))
                    }
                    Val::Tuple(items) => Err(TypeMismatch {
                        expected: rust_name::<Self>(),
                        found: format!("a tuple of {}", items.len()),
                    }),
                    other => Err(mismatch::<Self>(other)),
                }
            }
        }
    };
}

impl FromVal for () {
    fn from_val(val: &Val) -> Result<Self, TypeMismatch> {
        match val {
            Val::Tuple(items) if items.is_empty() => Ok(()),
            other => Err(mismatch::<()>(other)),
        }
    }
}

tuple!(A);
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);
tuple!(A, B, C, D, E);
tuple!(A, B, C, D, E, F);

/// An export's results as one Rust value: a single result as itself, none as `()`, several
/// as a tuple.
pub(crate) fn from_results<T: FromVal>(values: &[Val]) -> Result<T, TypeMismatch> {
    match values {
        [one] => T::from_val(one),
        many => T::from_val(&Val::Tuple(many.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::IntoVal;

    #[test]
    fn what_into_val_makes_from_val_reads_back() {
        assert_eq!(u64::from_val(&7u64.into_val()), Ok(7));
        assert_eq!(String::from_val(&"hi".into_val()), Ok("hi".to_string()));
        assert_eq!(
            Vec::<Option<i32>>::from_val(&vec![Some(1), None].into_val()),
            Ok(vec![Some(1), None])
        );
        assert_eq!(char::from_val(&'x'.into_val()), Ok('x'));
    }

    #[test]
    fn results_and_tuples_convert_and_payloadless_arms_are_unit() {
        let ok = Val::Result(Ok(Some(Box::new(Val::U32(3)))));
        assert_eq!(Result::<u32, String>::from_val(&ok), Ok(Ok(3)));
        let err = Val::Result(Err(None));
        assert_eq!(Result::<u32, ()>::from_val(&err), Ok(Err(())));
        let pair = Val::Tuple(vec![Val::String("a".into()), Val::Bool(true)]);
        assert_eq!(
            <(String, bool)>::from_val(&pair),
            Ok(("a".to_string(), true))
        );
    }

    #[test]
    fn several_results_read_as_a_tuple_and_none_as_unit() {
        assert_eq!(from_results::<u8>(&[Val::U8(1)]), Ok(1));
        assert_eq!(
            from_results::<(u8, u16)>(&[Val::U8(1), Val::U16(2)]),
            Ok((1, 2))
        );
        assert_eq!(from_results::<()>(&[]), Ok(()));
    }

    #[test]
    fn a_mismatch_names_both_types_and_integers_are_not_widened() {
        let error = u64::from_val(&Val::U32(1)).unwrap_err();
        assert_eq!(error.expected, "u64");
        assert_eq!(error.found, "u32");
        assert_eq!(error.to_string(), "expected u64, found u32");
        let error = <(u8, u8)>::from_val(&Val::Tuple(vec![Val::U8(1)])).unwrap_err();
        assert_eq!(error.found, "a tuple of 1");
        let error = Vec::<Option<String>>::from_val(&Val::String("x".into())).unwrap_err();
        assert_eq!(error.expected, "Vec<Option<String>>");
    }
}
