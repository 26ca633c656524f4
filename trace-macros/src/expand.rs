//! Code generation for `#[traced]` and `trace!`.
//!
//! Both functions take `enabled` explicitly rather than reading the `enable` feature, so that the
//! unit tests below can check both expansions in one build.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::{LitInt, LitStr};

use crate::attr::{self, Metadata, Options, TraceBody, TracedFn};

/// Expands `#[traced(args)] item`.
///
/// With errors, the output is the item exactly as written followed by the errors, so the user
/// sees the mistakes in the arguments and none of the knock-on errors a missing item would cause.
/// With `enabled == false` and no errors, the output is the item exactly as written.
pub(crate) fn traced(args: TokenStream, item: TokenStream, enabled: bool) -> TokenStream {
    let (args, mut errors) = attr::parse_traced_args(args);
    let function = attr::parse_traced_fn(item.clone())
        .map_err(|error| errors.push(error))
        .ok();
    match (errors.finish(), function) {
        (Ok(()), Some(function)) if enabled => instrument(item, &args.options, &function),
        (Ok(()), _) => item,
        (Err(error), _) => {
            let mut output = item;
            output.extend(error.into_compile_error());
            output
        }
    }
}

/// Puts the guard (and the metadata) at the top of the function body, leaving every other
/// token of the item as the user wrote it.
fn instrument(item: TokenStream, options: &Options, function: &TracedFn) -> TokenStream {
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    // `parse_traced_fn` accepted the item, so its last token is the body.
    let body = match tokens.pop() {
        Some(TokenTree::Group(body)) if body.delimiter() == Delimiter::Brace => body,
        last => {
            tokens.extend(last);
            return tokens.into_iter().collect();
        }
    };

    let krate = runtime(options);
    let name = match &options.name {
        Some(name) => name.to_token_stream(),
        None => {
            let ident = LitStr::new(
                &function.sig.ident.unraw().to_string(),
                function.sig.ident.span(),
            );
            quote!(::core::concat!(::core::module_path!(), "::", #ident))
        }
    };
    let level = level(options);
    // An `async fn` body runs from the first poll to completion, which is the event we want;
    // the runtime needs to know because the guard lives across `.await` points.
    let enter = if function.sig.asyncness.is_some() {
        quote!(enter_async)
    } else {
        quote!(enter)
    };
    // Mixed-site hygiene: the user's code can neither see nor shadow this binding, even if it
    // declares its own `__traced_guard`.
    let guard = Ident::new("__traced_guard", Span::mixed_site());
    let entry = enter_with_metadata(&krate, &enter, &name, &level, &guard, &options.metadata);
    let (inner_attributes, statements) = split_inner_attributes(body.stream());

    let mut new_body = Group::new(
        Delimiter::Brace,
        quote! {
            #inner_attributes
            #entry
            #statements
        },
    );
    new_body.set_span(body.span());
    tokens.push(new_body.into());
    tokens.into_iter().collect()
}

/// Expands `trace!(input)`.
///
/// With errors, the body is still expanded (with whatever options were valid) after the errors,
/// so that the code around the macro type-checks and only the real mistakes are reported.
pub(crate) fn trace(input: TokenStream, enabled: bool) -> TokenStream {
    let (input, errors) = attr::parse_trace_input(input);
    let errors = errors.finish().err().map(syn::Error::into_compile_error);
    let expansion = match &input.body {
        Some(body) if enabled => {
            let name = match &input.name {
                Some(name) => name.clone(),
                None => LitStr::new("trace", Span::call_site()),
            };
            trace_enabled(&name, &input.options, body)
        }
        Some(body) => trace_disabled(&input.options, body),
        None => TokenStream::new(),
    };
    match errors {
        None => expansion,
        Some(errors) => quote!({ #errors #expansion }),
    }
}

fn trace_enabled(name: &LitStr, options: &Options, body: &TraceBody) -> TokenStream {
    let krate = runtime(options);
    let level = level(options);
    let guard = Ident::new("__trace_guard", Span::mixed_site());
    let entry = enter_with_metadata(
        &krate,
        &quote!(enter),
        &name.to_token_stream(),
        &level,
        &guard,
        &options.metadata,
    );
    let binding = body
        .binding
        .as_ref()
        .map(|binding| quote!(let #binding: &#krate::Trace = &#guard;));
    let block = user_block(&body.block);
    quote! {
        {
            #entry
            #binding
            #block
        }
    }
}

/// With the feature off the body is all there is; the metadata is not evaluated.
fn trace_disabled(options: &Options, body: &TraceBody) -> TokenStream {
    let block = user_block(&body.block);
    match &body.binding {
        None => block.into_token_stream(),
        Some(binding) => {
            let krate = runtime(options);
            quote! {
                {
                    let #binding: &#krate::Trace = &#krate::Trace::disabled();
                    #block
                }
            }
        }
    }
}

/// The user's `{ ... }`, its braces marked as coming from this macro.
///
/// The braces stay where the user wrote them for diagnostics, but resolve like generated code,
/// so that `unused_braces` does not fire on `trace!("x", { 1 })`, where they are required.
/// Nothing inside is touched.
fn user_block(block: &TokenTree) -> TokenTree {
    match block {
        TokenTree::Group(group) => {
            let mut braces = Group::new(group.delimiter(), group.stream());
            braces.set_span(group.span().resolved_at(Span::call_site()));
            braces.into()
        }
        other => other.clone(),
    }
}

/// The path of the runtime crate: `crate = path`, or `::trace_runtime`.
fn runtime(options: &Options) -> TokenStream {
    match &options.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::trace_runtime),
    }
}

/// The level as a `u8` literal; 1 (critical) unless `level = N` says otherwise.
fn level(options: &Options) -> LitInt {
    let (value, span) = options
        .level
        .map_or((1, Span::call_site()), |level| (level.value, level.span));
    LitInt::new(&format!("{value}u8"), span)
}

/// The guard's binding and its metadata. Without metadata, the guard alone. With metadata,
/// the call site is declared with the first key as its inline key, and the values are
/// evaluated only while the event is being recorded:
///
/// `let site = callsite!(name, level, "k0"); let mut guard = enter(site);
///  if guard.is_active() { set_inline_metadata(&mut guard, site, v0); guard.set_metadata("k1", v1); ... }`
///
/// so that a number under the first key travels inside the event's own record.
fn enter_with_metadata(
    krate: &TokenStream,
    enter: &TokenStream,
    name: &TokenStream,
    level: &LitInt,
    guard: &Ident,
    metadata: &[Metadata],
) -> TokenStream {
    let Some((first, rest)) = metadata.split_first() else {
        return quote! {
            let #guard = #krate::__private::#enter(#krate::__private::callsite!(#name, #level));
        };
    };
    let site = Ident::new("__trace_site", Span::mixed_site());
    let (first_key, first_value) = (&first.key, &first.value);
    let keys = rest.iter().map(|m| &m.key);
    let values = rest.iter().map(|m| &m.value);
    quote! {
        let #site = #krate::__private::callsite!(#name, #level, #first_key);
        let mut #guard = #krate::__private::#enter(#site);
        if #guard.is_active() {
            #krate::__private::set_inline_metadata(&mut #guard, #site, #first_value);
            #( #guard.set_metadata(#keys, #values); )*
        }
    }
}

/// Splits `#![...]` attributes (and `//!` comments) off the front of a function body: they must
/// stay before the first statement.
fn split_inner_attributes(body: TokenStream) -> (TokenStream, TokenStream) {
    let mut tokens = body.into_iter().peekable();
    let mut attributes = TokenStream::new();
    loop {
        let mut lookahead = tokens.clone();
        match (lookahead.next(), lookahead.next(), lookahead.next()) {
            (
                Some(TokenTree::Punct(pound)),
                Some(TokenTree::Punct(bang)),
                Some(TokenTree::Group(group)),
            ) if pound.as_char() == '#'
                && bang.as_char() == '!'
                && group.delimiter() == Delimiter::Bracket =>
            {
                attributes.extend(tokens.by_ref().take(3));
            }
            _ => break,
        }
    }
    (attributes, tokens.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Token-by-token equality: kinds, delimiters, spellings and spacing (spans cannot be
    /// compared outside a compiler).
    fn assert_same_tokens(left: TokenStream, right: TokenStream) {
        fn flatten(tokens: TokenStream, out: &mut Vec<String>) {
            for token in tokens {
                match token {
                    TokenTree::Group(group) => {
                        out.push(format!("open {:?}", group.delimiter()));
                        flatten(group.stream(), out);
                        out.push(format!("close {:?}", group.delimiter()));
                    }
                    TokenTree::Ident(ident) => out.push(format!("ident {ident}")),
                    TokenTree::Punct(punct) => {
                        out.push(format!("punct {} {:?}", punct.as_char(), punct.spacing()));
                    }
                    TokenTree::Literal(literal) => out.push(format!("literal {literal}")),
                }
            }
        }
        let (mut l, mut r) = (Vec::new(), Vec::new());
        flatten(left, &mut l);
        flatten(right, &mut r);
        assert_eq!(l, r);
    }

    fn traced_str(args: TokenStream, item: TokenStream, enabled: bool) -> String {
        traced(args, item, enabled).to_string()
    }

    #[test]
    fn disabled_traced_returns_the_item_exactly() {
        let item = quote! {
            fn f(step: i64) -> i64 { step + 1 }
        };
        let output = traced(quote!(step_num = step), item.clone(), false);
        assert_eq!(output.to_string(), item.to_string());
        assert_same_tokens(output, item);
    }

    #[test]
    fn disabled_traced_keeps_every_shape_exactly() {
        for item in [
            quote!(
                #[inline]
                pub async fn f<T>(x: T) -> T
                where
                    T: Send,
                {
                    #![allow(unused)]
                    x
                }
            ),
            quote!(
                /// Docs.
                unsafe fn f(&mut self) -> impl Iterator<Item = u8> {
                    0..1
                }
            ),
        ] {
            let output = traced(
                quote!(name = "n", level = 3, crate = a::b, k = 1),
                item.clone(),
                false,
            );
            assert_same_tokens(output, item);
        }
    }

    #[test]
    fn enabled_traced_sync_fn() {
        let output = traced_str(
            quote!(step_num = step),
            quote!(
                fn f(step: i64) -> i64 {
                    step + 1
                }
            ),
            true,
        );
        let expected = quote! {
            fn f(step: i64) -> i64 {
                let __trace_site = ::trace_runtime::__private::callsite!(
                    ::core::concat!(::core::module_path!(), "::", "f"),
                    1u8,
                    "step_num"
                );
                let mut __traced_guard = ::trace_runtime::__private::enter(__trace_site);
                if __traced_guard.is_active() {
                    ::trace_runtime::__private::set_inline_metadata(
                        &mut __traced_guard,
                        __trace_site,
                        step
                    );
                }
                step + 1
            }
        };
        assert_eq!(output, expected.to_string());
    }

    #[test]
    fn enabled_traced_without_metadata_has_no_branch() {
        let output = traced_str(
            quote!(name = "Train", level = 3, crate = my::rt),
            quote!(
                pub(crate) fn r#match(&self) {}
            ),
            true,
        );
        let expected = quote! {
            pub(crate) fn r#match(&self) {
                let __traced_guard = my::rt::__private::enter(
                    my::rt::__private::callsite!("Train", 3u8)
                );
            }
        };
        assert_eq!(output, expected.to_string());
    }

    #[test]
    fn enabled_traced_default_name_uses_the_unraw_ident() {
        let output = traced_str(
            quote!(),
            quote!(
                fn r#type() {}
            ),
            true,
        );
        let expected = quote! {
            fn r#type() {
                let __traced_guard = ::trace_runtime::__private::enter(
                    ::trace_runtime::__private::callsite!(
                        ::core::concat!(::core::module_path!(), "::", "type"),
                        1u8
                    )
                );
            }
        };
        assert_eq!(output, expected.to_string());
    }

    #[test]
    fn enabled_traced_async_fn_uses_enter_async() {
        let output = traced_str(
            quote!(id = id),
            quote!(
                async fn handler(id: u32) -> Result<(), E> {
                    step().await?;
                    Ok(())
                }
            ),
            true,
        );
        let expected = quote! {
            async fn handler(id: u32) -> Result<(), E> {
                let __trace_site = ::trace_runtime::__private::callsite!(
                    ::core::concat!(::core::module_path!(), "::", "handler"),
                    1u8,
                    "id"
                );
                let mut __traced_guard = ::trace_runtime::__private::enter_async(__trace_site);
                if __traced_guard.is_active() {
                    ::trace_runtime::__private::set_inline_metadata(
                        &mut __traced_guard,
                        __trace_site,
                        id
                    );
                }
                step().await?;
                Ok(())
            }
        };
        assert_eq!(output, expected.to_string());
    }

    #[test]
    fn enabled_traced_keeps_inner_attributes_first() {
        let output = traced_str(
            quote!(name = "n"),
            quote!(
                #[must_use]
                fn f() -> u8 {
                    #![allow(unused)]
                    #![deny(warnings)]
                    let x = 1;
                    2
                }
            ),
            true,
        );
        let expected = quote! {
            #[must_use] fn f() -> u8 {
                #![allow(unused)] #![deny(warnings)]
                let __traced_guard = ::trace_runtime::__private::enter(
                    ::trace_runtime::__private::callsite!("n", 1u8)
                );
                let x = 1; 2
            }
        };
        assert_eq!(output, expected.to_string());
    }

    #[test]
    fn traced_errors_keep_the_item_in_both_modes() {
        let item = quote!(
            fn f() {}
        );
        for enabled in [false, true] {
            let output = traced(quote!(level = 9, bare), item.clone(), enabled);
            let text = output.to_string();
            assert!(text.starts_with(&item.to_string()), "{text}");
            assert_eq!(text.matches("compile_error").count(), 2, "{text}");
        }
        for bad in [
            quote!(
                struct S;
            ),
            quote!(
                const fn f() {}
            ),
            quote!(
                fn f();
            ),
        ] {
            let output = traced(quote!(), bad.clone(), true).to_string();
            assert!(output.starts_with(&bad.to_string()), "{output}");
            assert_eq!(output.matches("compile_error").count(), 1, "{output}");
        }
    }

    #[test]
    fn enabled_trace_block() {
        let output = trace(
            quote!("call", f = name(), level = 2, g = 1.5, { run()? }),
            true,
        );
        let expected = quote! {
            {
                let __trace_site = ::trace_runtime::__private::callsite!("call", 2u8, "f");
                let mut __trace_guard = ::trace_runtime::__private::enter(__trace_site);
                if __trace_guard.is_active() {
                    ::trace_runtime::__private::set_inline_metadata(
                        &mut __trace_guard,
                        __trace_site,
                        name()
                    );
                    __trace_guard.set_metadata("g", 1.5);
                }
                { run()? }
            }
        };
        assert_eq!(output.to_string(), expected.to_string());
    }

    #[test]
    fn enabled_trace_closure_form() {
        let output = trace(
            quote!("call", crate = rt, |tm| {
                tm.set_metadata("a", 1);
                2
            }),
            true,
        );
        let expected = quote! {
            {
                let __trace_guard = rt::__private::enter(rt::__private::callsite!("call", 1u8));
                let tm: &rt::Trace = &__trace_guard;
                { tm.set_metadata("a", 1); 2 }
            }
        };
        assert_eq!(output.to_string(), expected.to_string());
    }

    #[test]
    fn disabled_trace_is_the_block() {
        let block = quote!({
            let x = work()?;
            x + 1
        });
        let output = trace(quote!("call", a = expensive(), level = 3, #block), false);
        assert_same_tokens(output, block);

        let output = trace(quote!("call", a = expensive(), |_| { 1 }), false);
        let expected = quote! {
            {
                let _: &::trace_runtime::Trace = &::trace_runtime::Trace::disabled();
                { 1 }
            }
        };
        assert_eq!(output.to_string(), expected.to_string());
        assert!(!output.to_string().contains("expensive"));
    }

    #[test]
    fn trace_errors_keep_the_body() {
        for enabled in [false, true] {
            let output = trace(quote!(name, level = 0, { body() }), enabled).to_string();
            assert_eq!(output.matches("compile_error").count(), 2, "{output}");
            assert!(output.contains("body ()"), "{output}");
        }
        let output = trace(quote!("x", a = 1), true).to_string();
        assert_eq!(output.matches("compile_error").count(), 1, "{output}");
    }
}
