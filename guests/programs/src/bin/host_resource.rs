//! Imports a host interface with a resource type, for the test that such a component is
//! refused at load: a handle cannot cross to the host process.

wasmp_guest::wit_bindgen::generate!({
    path: "wit/app-host.wit",
    world: "resource-user",
    runtime_path: "wasmp_guest::wit_bindgen::rt",
});

struct User;

impl Guest for User {
    fn use_it() -> String {
        app::host::handles::open().query()
    }
}

export!(User);

fn main() {}
