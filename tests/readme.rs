//! The README's taste is `examples/taste.rs`, word for word, so the code a newcomer copies is
//! code that CI compiles (and that the README doctest compiles again).

#[test]
fn readme_taste_is_examples_taste() {
    let readme = include_str!("../README.md");
    let taste = include_str!("../examples/taste.rs");
    let start = readme.find("## A taste").expect("a taste section");
    let block = &readme[start..];
    let open = block.find("```rust,no_run\n").expect("a rust block") + "```rust,no_run\n".len();
    let close = block[open..].find("```").expect("the block ends") + open;
    assert_eq!(&block[open..close], taste, "README's taste and examples/taste.rs differ");
    assert!(taste.contains("contree-local/base:latest"), "the taste uses the built-in image of contree-local");
}
