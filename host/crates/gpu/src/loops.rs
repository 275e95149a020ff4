//! Decides which kernels may run without wgpu's loop bounding.
//!
//! By default wgpu (through naga) gives every shader loop a hidden
//! iteration counter and leaves the loop when the counter runs out, so that
//! a loop that never ends cannot hang the device. On llvmpipe that counter
//! costs real time in every iteration: with it off, prefill of a 128-token
//! prompt on SmolLM2 ran about 20% faster and decoding 4 sequences about
//! 13% faster (`laser-host bench engine`, Mesa 22.3.6, 2 cores).
//!
//! Turning it off is safe only for shaders whose loops all end. The check
//! here is lexical and errs on the side of keeping the counter. A kernel
//! may drop it only when it has no `loop` or `while` statement and each
//! `for` loop steps its counter by a constant. The accepted steps are
//! `i++`, `i--`, `i += C` and `i -= C` (with `C` made of literals and
//! constant names), `i *= 2u`, `i /= 2u` and `i >>= 1u`. Loop bounds come
//! from uniforms and buffer sizes, which are finite and far below
//! `u32::MAX`, so such loops end.
//!
//! NOTE: the check does not compare the step's direction with the
//! condition, so `for (var i = 0u; i < n; i -= 1u)` would pass. Review the
//! direction of new loops by hand.

/// Returns whether every loop in the WGSL `source` steps by a constant, so
/// the kernel may run without wgpu's loop bounding (see the module docs).
pub(crate) fn loops_end(source: &str) -> bool {
    let code = strip_comments(source);
    let tokens = tokenize(&code);
    if tokens.iter().any(|t| t == "loop" || t == "while") {
        return false;
    }
    let constants: Vec<&str> = tokens
        .windows(2)
        .filter(|pair| pair[0] == "const" || pair[0] == "override")
        .map(|pair| pair[1].as_str())
        .collect();
    let mut rest = tokens.as_slice();
    while let Some(at) = rest.iter().position(|t| t == "for") {
        rest = &rest[at + 1..];
        let steps_by_constant =
            update_clause(rest).is_some_and(|update| update_is_constant(update, &constants));
        if !steps_by_constant {
            return false;
        }
    }
    true
}

/// Removes `//` line comments and `/* */` block comments.
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    loop {
        let line = rest.find("//");
        let block = rest.find("/*");
        match (line, block) {
            (Some(l), b) if b.is_none_or(|b| l < b) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |end| &rest[l + end..]);
            }
            (_, Some(b)) => {
                out.push_str(&rest[..b]);
                // An unclosed block comment runs to the end of the source.
                rest = rest[b + 2..]
                    .find("*/")
                    .map_or("", |end| &rest[b + 2 + end + 2..]);
                out.push(' ');
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// Splits code into identifiers, numbers and single punctuation characters.
fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(i, next)) = chars.peek() {
                if !(next.is_alphanumeric() || next == '_' || next == '.') {
                    break;
                }
                end = i + next.len_utf8();
                chars.next();
            }
            tokens.push(code[start..end].to_string());
        } else {
            tokens.push(c.to_string());
        }
    }
    tokens
}

/// Returns the tokens of the third clause of the `for` header that
/// `tokens` start with, or `None` when they do not start with a header of
/// three clauses in closed parentheses.
fn update_clause(tokens: &[String]) -> Option<&[String]> {
    let (open, rest) = tokens.split_first()?;
    if open != "(" {
        return None;
    }
    let mut depth = 1usize;
    let mut semicolons = Vec::new();
    for (i, token) in rest.iter().enumerate() {
        match token.as_str() {
            "(" => depth += 1,
            ";" if depth == 1 => semicolons.push(i),
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return match semicolons.as_slice() {
                        [_, second] => Some(&rest[second + 1..i]),
                        _ => None,
                    };
                }
            }
            _ => {}
        }
    }
    None
}

/// Returns whether `update` steps one variable by a constant.
fn update_is_constant(update: &[String], constants: &[&str]) -> bool {
    let Some((variable, rest)) = update.split_first() else {
        return false;
    };
    if !is_identifier(variable) {
        return false;
    }
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match rest.as_slice() {
        ["+", "+"] | ["-", "-"] => true,
        ["*", "=", two] | ["/", "=", two] => is_literal(two, 2),
        [">", ">", "=", one] => is_literal(one, 1),
        ["+", "=", step @ ..] | ["-", "=", step @ ..] => is_constant_expression(step, constants),
        _ => false,
    }
}

/// Returns whether `tokens` form a non-empty expression of non-zero
/// literals, constant names, arithmetic operators and parentheses.
fn is_constant_expression(tokens: &[&str], constants: &[&str]) -> bool {
    !tokens.is_empty()
        && tokens.iter().all(|&t| {
            matches!(t, "*" | "/" | "+" | "-" | "(" | ")")
                || constants.contains(&t)
                || is_screaming_case(t)
                || (t.starts_with(|c: char| c.is_ascii_digit()) && !is_literal(t, 0))
        })
}

fn is_identifier(token: &str) -> bool {
    token.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// Names in SCREAMING_CASE are constants by WGSL convention, and the host
/// declares some of them in snippets prepended to a kernel.
fn is_screaming_case(token: &str) -> bool {
    is_identifier(token)
        && token.chars().any(|c| c.is_ascii_uppercase())
        && token
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Returns whether `token` is the integer literal `value`, with or without
/// a `u` or `i` suffix.
fn is_literal(token: &str, value: u64) -> bool {
    token.trim_end_matches(['u', 'i']).parse::<u64>() == Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shader_may_drop_loop_bounding() {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shaders");
        let mut checked = 0;
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "wgsl") {
                let source = std::fs::read_to_string(&path).unwrap();
                assert!(
                    loops_end(&source),
                    "{} has a loop that may not end",
                    path.display()
                );
                checked += 1;
            }
        }
        assert!(checked > 40, "found only {checked} shaders in {folder}");
    }

    #[test]
    fn constant_steps_pass() {
        let cases = [
            "for (var i = 0u; i < n; i++) {}",
            "for (var i = 9i; i >= 0; i--) {}",
            "for (var i = lid; i < n; i += WG) {}",
            "const step = 4u; for (var g = 0u; g < n; g += 4u * step) {}",
            "for (var s = WG / 2u; s > 0u; s /= 2u) {}",
            "for (var o = 1u; o < WG; o *= 2u) {}",
            "for (var s = 128u; s > 0u; s >>= 1u) {}",
            "for (; g < n; g += (2u + LANES)) {}",
            "for (var g = 0u; g < n; g += TILE_K / 4u) {}",
            "// while (true) {}\nfor (var i = 0u; i < n; i++) {}",
            "/* loop { } */ fn f() {}",
            "fn format_loop_free() {}",
        ];
        for source in cases {
            assert!(loops_end(source), "{source}");
        }
    }

    #[test]
    fn other_loops_fail() {
        let cases = [
            "loop { if x { break; } }",
            "while (i < n) { i++; }",
            "for (var i = 0u; i < n; i += params.step) {}",
            "for (var i = 0u; i < n; i += 0u) {}",
            "for (var i = 0u; i < n; i = i + 1u) {}",
            "for (var i = 0u; i < n;) {}",
            "for (var s = n; s > 0u; s /= 1u) {}",
            "for (var o = 1u; o < n; o *= k) {}",
            "for (var i = 0u; i < n; i += 1u {",
            "for (var i = 0u; i < n; i += stride) {}",
        ];
        for source in cases {
            assert!(!loops_end(source), "{source}");
        }
    }
}
