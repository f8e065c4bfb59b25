//! `#[cache]` misuse: each file in tests/ui must fail to compile with the
//! error in its `.stderr`, pointing at the offending token and saying how to
//! fix it. Regenerate the expected output with `TRYBUILD=overwrite`, then
//! read every changed line.

#[test]
fn misuse_is_a_clear_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
