//! `#[torito::main]`: marks the application's `async fn main`.
//!
//! The attribute keeps the function as written and adds the one exported symbol the
//! kernel calls to get the application's future, so that an application needs no
//! `unsafe`, no linker script and no boot code. It parses the item by hand (a handful of
//! tokens) rather than pulling `syn` into every build.

use proc_macro::{Delimiter, TokenStream, TokenTree};

fn error(message: &str) -> TokenStream {
    format!("::core::compile_error!({message:?});")
        .parse()
        .expect("a compile_error! call parses")
}

/// Makes `async fn main()` (returning `()`, an integer exit code, or a `Result`) the
/// application's entry point.
///
/// ```ignore
/// #[torito::main]
/// async fn main() {
///     torito::println!("Hello from Torito");
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attribute: TokenStream, item: TokenStream) -> TokenStream {
    if !attribute.is_empty() {
        return error("#[torito::main] takes no arguments");
    }
    let tokens: Vec<TokenTree> = item.clone().into_iter().collect();
    let is_word = |token: &TokenTree, word: &str| matches!(token, TokenTree::Ident(ident) if ident.to_string() == word);
    let Some(fn_at) = tokens.iter().position(|token| is_word(token, "fn")) else {
        return error("#[torito::main] goes on an `async fn`");
    };
    if !tokens[..fn_at].iter().any(|token| is_word(token, "async")) {
        return error("#[torito::main] needs an `async fn`: the kernel runs it as the first task");
    }
    let Some(TokenTree::Ident(name)) = tokens.get(fn_at + 1) else {
        return error("#[torito::main]: expected the function's name after `fn`");
    };
    let takes_arguments = tokens[fn_at + 2..].iter().find_map(|token| match token {
        TokenTree::Group(group) if group.delimiter() == Delimiter::Parenthesis => {
            Some(!group.stream().is_empty())
        }
        _ => None,
    });
    if takes_arguments != Some(false) {
        return error(
            "#[torito::main]: the main function takes no arguments (see torito::boot::app_args)",
        );
    }
    let entry = format!(
        "#[doc(hidden)]
         #[unsafe(export_name = \"torito_app_main\")]
         pub fn __torito_app_main() -> ! {{
             ::torito::__private::run_main({name}())
         }}"
    );
    let mut output = item;
    output.extend(
        entry
            .parse::<TokenStream>()
            .expect("the generated entry parses"),
    );
    output
}
