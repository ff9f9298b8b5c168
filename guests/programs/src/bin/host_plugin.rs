//! A plugin of the host-function tests and of `host/examples/plugin_host.rs`: it calls back
//! into its host through the embedder's interfaces `app:host/log`, `app:host/kv` and
//! `app:host/values` (`guests/programs/wit/app-host.wit`).

wasmp_guest::wit_bindgen::generate!({
    path: "wit/app-host.wit",
    world: "plugin",
    runtime_path: "wasmp_guest::wit_bindgen::rt",
});

use app::host::log::{Level, log};
use app::host::values::{Color, Everything, Perms, Point, Shape};
use app::host::{kv, values};

struct Plugin;

impl Guest for Plugin {
    fn run(name: String) -> String {
        log(Level::Info, &format!("{name} starting"));
        let runs = match kv::incr("runs", 1) {
            Ok(runs) => runs,
            Err(e) => {
                log(Level::Error, &e);
                return format!("{name}: {e}");
            }
        };
        kv::set(&format!("last-run-by-{name}"), &runs.to_string());
        let greeting = kv::get("greeting").unwrap_or_else(|| "hello".into());
        log(Level::Debug, &format!("{name} done"));
        format!("{greeting} from {name} (run {runs})")
    }

    fn flood(calls: u32, payload: u32) -> u64 {
        let key = "k".repeat(payload as usize);
        let mut found = 0;
        for _ in 0..calls {
            if kv::get(&key).is_some() {
                found += 1;
            }
        }
        found
    }

    fn roundtrip() -> String {
        let sent = Everything {
            p: Point {
                x: -7,
                y: i32::MAX,
                label: Some("a \"quoted\" label\nwith ünïcode ✓".into()),
            },
            s: vec![Shape::Circle(3), Shape::Rect((4, 5)), Shape::Nothing],
            c: Color::Green,
            f: Perms::READ | Perms::EXEC,
            bytes: (0..=255).collect(),
            t: (true, '🦀', -0.5, i8::MIN, u16::MAX, 1.25),
            r: Err("an error payload".into()),
            o: Some(vec![String::new(), "two".into()]),
        };
        let back = values::echo(&sent);
        let differences = [
            ("p", format!("{:?}", sent.p) != format!("{:?}", back.p)),
            ("s", format!("{:?}", sent.s) != format!("{:?}", back.s)),
            ("c", sent.c != back.c),
            ("f", sent.f != back.f),
            ("bytes", sent.bytes != back.bytes),
            ("t", format!("{:?}", sent.t) != format!("{:?}", back.t)),
            ("r", sent.r != back.r),
            ("o", sent.o != back.o),
        ];
        let different: Vec<_> = differences
            .iter()
            .filter(|(_, differs)| *differs)
            .map(|(name, _)| *name)
            .collect();
        if different.is_empty() {
            "ok".into()
        } else {
            format!("differs: {}", different.join(", "))
        }
    }

    fn store_big(bytes: u32) {
        kv::set("big", &"x".repeat(bytes as usize));
    }

    fn lookup(key: String) -> Option<String> {
        kv::get(&key)
    }
}

export!(Plugin);

fn main() {}
