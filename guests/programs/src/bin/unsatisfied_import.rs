//! Imports an interface wasmp does not provide, for the test that such a component is refused
//! before anything is spawned.

wasmp_guest::wit_bindgen::generate!({
    inline: "
        package wasmp:tests;
        interface not-provided {
            launch: func();
        }
        world unsatisfied {
            import not-provided;
        }
    ",
    runtime_path: "wasmp_guest::wit_bindgen::rt",
});

fn main() {
    wasmp::tests::not_provided::launch();
}
