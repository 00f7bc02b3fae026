//! `cargo run -p gridcase-bindings --bin uniffi-bindgen -- generate --library <lib> ...`:
//! generates the Kotlin, Swift and Python sources from the built library (see `generate.sh`).

fn main() {
    uniffi::uniffi_bindgen_main()
}
