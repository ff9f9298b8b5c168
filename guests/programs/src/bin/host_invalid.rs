//! Hands the host values that break the canonical ABI, through the raw core imports
//! wit-bindgen would otherwise call for it: a string out of bounds of memory, a string that
//! is not UTF-8, an enum discriminant that does not exist. Each must trap this guest with a
//! clear message, and reach no host closure.

wasmp_guest::wit_bindgen::generate!({
    path: "wit/app-host.wit",
    world: "invalid-values",
    runtime_path: "wasmp_guest::wit_bindgen::rt",
});

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "app:host/kv@0.1.0")]
unsafe extern "C" {
    #[link_name = "set"]
    fn raw_set(key: *const u8, key_len: usize, value: *const u8, value_len: usize);
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "app:host/log@0.1.0")]
unsafe extern "C" {
    #[link_name = "log"]
    fn raw_log(level: i32, message: *const u8, message_len: usize);
}

#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_set(_: *const u8, _: usize, _: *const u8, _: usize) {
    unreachable!("a wasm guest")
}

#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_log(_: i32, _: *const u8, _: usize) {
    unreachable!("a wasm guest")
}

struct Invalid;

impl Guest for Invalid {
    fn send_invalid(how: String) {
        let ok = b"key";
        match how.as_str() {
            // Past the end of linear memory.
            "bounds" => unsafe { raw_set(ok.as_ptr(), ok.len(), 0xffff_ff00 as *const u8, 0x1000) },
            "utf8" => {
                let bad = [0xc3u8, 0x28, 0xff];
                unsafe { raw_set(ok.as_ptr(), ok.len(), bad.as_ptr(), bad.len()) }
            }
            "enum" => unsafe { raw_log(7, ok.as_ptr(), ok.len()) },
            // A valid call, to show the same imports work when the values are right.
            _ => app::host::kv::set("key", "value"),
        }
    }
}

export!(Invalid);

fn main() {}
