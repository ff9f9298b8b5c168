//! Exported functions of several WIT types, for `--invoke` / `Process::invoke` tests.

wasmp_guest::wit_bindgen::generate!({
    inline: "
        package wasmp:tests;
        world exports {
            export add: func(a: u32, b: u32) -> u32;
            export greet: func(who: string) -> string;
            export describe: func(flag: bool, items: list<s64>, label: option<string>) -> string;
            export fail: func(message: string);
            export spin: func();
            export identity: func() -> string;
        }
    ",
    runtime_path: "wasmp_guest::wit_bindgen::rt",
});

struct Exports;

impl Guest for Exports {
    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }

    fn greet(who: String) -> String {
        println!("greeting {who}");
        format!("hello, {who}")
    }

    fn describe(flag: bool, items: Vec<i64>, label: Option<String>) -> String {
        let sum: i64 = items.iter().sum();
        format!("flag={flag} n={} sum={sum} label={label:?}", items.len())
    }

    fn fail(message: String) {
        panic!("{message}");
    }

    fn spin() {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn identity() -> String {
        format!(
            "name={} pid={} ppid={}",
            wasmp_guest::process::name(),
            wasmp_guest::process::pid(),
            wasmp_guest::process::ppid()
        )
    }
}

export!(Exports);

fn main() {}
