//! WIT-like text for component types, so that errors can show what an export expects.

use wasmtime::component::Type;
use wasmtime::component::types::ComponentFunc;

/// `func(a: u32, b: string) -> string`
pub(crate) fn describe_func(func: &ComponentFunc) -> String {
    let params: Vec<String> = func
        .params()
        .map(|(name, ty)| format!("{name}: {}", describe_type(&ty)))
        .collect();
    let results: Vec<String> = func.results().map(|ty| describe_type(&ty)).collect();
    let mut text = format!("func({})", params.join(", "));
    match results.len() {
        0 => {}
        1 => text.push_str(&format!(" -> {}", results[0])),
        _ => text.push_str(&format!(" -> ({})", results.join(", "))),
    }
    text
}

/// The WIT spelling of a type, structurally (named types show their structure).
pub(crate) fn describe_type(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(list) => format!("list<{}>", describe_type(&list.ty())),
        Type::Option(option) => format!("option<{}>", describe_type(&option.ty())),
        Type::Result(result) => format!(
            "result<{}, {}>",
            result.ok().map_or("_".into(), |ty| describe_type(&ty)),
            result.err().map_or("_".into(), |ty| describe_type(&ty))
        ),
        Type::Tuple(tuple) => format!(
            "tuple<{}>",
            tuple
                .types()
                .map(|ty| describe_type(&ty))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Record(record) => format!(
            "record {{ {} }}",
            record
                .fields()
                .map(|field| format!("{}: {}", field.name, describe_type(&field.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Variant(variant) => format!(
            "variant {{ {} }}",
            variant
                .cases()
                .map(|case| match case.ty {
                    Some(ty) => format!("{}({})", case.name, describe_type(&ty)),
                    None => case.name.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Flags(f) => format!("flags {{ {} }}", f.names().collect::<Vec<_>>().join(", ")),
        other => format!("{other:?}").to_lowercase(),
    }
}
