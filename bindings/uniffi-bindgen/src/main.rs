//! `uniffi-bindgen`: generates the Kotlin, Swift and Python sources of the FieldSync SDK
//! from the built `libfieldsync_ffi` (library mode). `scripts/bindings.sh` runs it.

fn main() {
    uniffi::uniffi_bindgen_main();
}
