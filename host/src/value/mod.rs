//! Component-model values: Rust values into [`Val`]s (for
//! [`Process::invoke`](crate::Process::invoke)) and back out (`from`), JSON into and out of
//! them (`json`), bytes for host-function calls (`wire`), and how their types read in WIT
//! (`signature`). Pure functions of wasmtime's value types: no
//! process, no component, nothing of the rest of the crate.

pub(crate) mod from;
pub(crate) mod json;
pub(crate) mod signature;
pub(crate) mod wire;

use wasmtime::component::Val;

/// Converts a Rust value into a component-model [`Val`].
///
/// Implemented for strings, `bool`, `char`, the integer and float types, `Vec`s and
/// `Option`s of those, and `Val` itself (for records, variants and other shapes).
pub trait IntoVal {
    /// The value as a [`Val`].
    fn into_val(self) -> Val;
}

impl IntoVal for Val {
    fn into_val(self) -> Val {
        self
    }
}

impl IntoVal for &str {
    fn into_val(self) -> Val {
        Val::String(self.to_string())
    }
}

impl IntoVal for String {
    fn into_val(self) -> Val {
        Val::String(self)
    }
}

impl IntoVal for &String {
    fn into_val(self) -> Val {
        Val::String(self.clone())
    }
}

macro_rules! scalar {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl IntoVal for $ty {
            fn into_val(self) -> Val {
                Val::$variant(self)
            }
        })*
    };
}

scalar! {
    bool => Bool, char => Char,
    i8 => S8, u8 => U8, i16 => S16, u16 => U16, i32 => S32, u32 => U32, i64 => S64, u64 => U64,
    f32 => Float32, f64 => Float64,
}

impl<T: IntoVal> IntoVal for Vec<T> {
    fn into_val(self) -> Val {
        Val::List(self.into_iter().map(IntoVal::into_val).collect())
    }
}

impl<T: IntoVal> IntoVal for Option<T> {
    fn into_val(self) -> Val {
        Val::Option(self.map(|v| Box::new(v.into_val())))
    }
}
