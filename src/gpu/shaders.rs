//! The WGSL sources, embedded at build time, and the small specialiser that makes variants.
//!
//! A shader file, its `// #include` lines expanded (see [`super::wgsl_include`]), is plain
//! WGSL with default values. A variant rewrites the right-hand
//! side of named module-scope declarations: `const WG: u32 = 64u;` or `alias T = f32;`.
//!
//! Then [`select_sections`] keeps one branch of each `// #if FLAG` section, FLAG a module-scope
//! `const FLAG: bool`: a subgroup twin is its file with `SUBGROUPS` set, and the default text
//! must not name subgroup builtins at all, or it fails validation on devices without them.
//! Then [`unroll`] writes out the loops marked `// #unroll`: lavapipe's compiler leaves loops
//! of a few hundred instructions rolled, and a rolled loop that indexes a private array keeps
//! that array in memory, which slowed the direct GEMM down (see shaders/cpu/gemm_direct.wgsl).
//! [`prepare`] does all three, as every pipeline is built; the naga test validates each file
//! prepared with its defaults, and every variant the ops build.

include!(concat!(env!("OUT_DIR"), "/shaders.rs"));

/// The source of `shaders/{name}.wgsl` (`name` may be `cpu/STEM`).
pub fn source(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Rewrites `const NAME ... = value;`, `override NAME ... = value;` or `alias NAME = value;`
/// for each `(NAME, value)`. A name that the source does not declare is an error, so a typo
/// cannot silently fall back to the default.
pub fn specialize(src: &str, consts: &[(&str, String)]) -> Result<String, String> {
    let mut lines: Vec<String> = src.lines().map(String::from).collect();
    for (name, value) in consts {
        let found = lines.iter_mut().find(|line| {
            let t = line.trim_start();
            ["const ", "override ", "alias "].iter().any(|kw| {
                t.strip_prefix(kw).is_some_and(|rest| {
                    let rest = rest.trim_start();
                    rest.strip_prefix(name).is_some_and(|after| after.starts_with([':', ' ', '=']))
                })
            })
        });
        let line = found.ok_or_else(|| format!("no module-scope declaration of `{name}`"))?;
        let eq = line.find('=').ok_or_else(|| format!("`{name}` has no initialiser"))?;
        let semi = line.rfind(';').ok_or_else(|| format!("`{name}` declaration lacks `;`"))?;
        *line = format!("{} {value}{}", &line[..=eq], &line[semi..]);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// [`specialize`], [`select_sections`], then [`unroll`]: the text a pipeline is compiled from.
pub fn prepare(src: &str, consts: &[(&str, String)]) -> Result<String, String> {
    unroll(&select_sections(&specialize(src, consts)?)?)
}

/// The directives of [`select_sections`], each alone on its line.
const IF: &str = "// #if ";
const ELSE: &str = "// #else";
const ENDIF: &str = "// #endif";

/// Keeps the lines of the taken branch of every section `// #if FLAG` .. (`// #else` ..)
/// `// #endif`, dropping the other branch and the directives; sections may nest. FLAG must be
/// a `const FLAG: bool = true;` (or `false`) of `src`, so a typo or a missing `#endif` is an
/// error rather than silently kept or dropped code. Declare FLAG, and anything the host
/// specialises, outside sections.
pub fn select_sections(src: &str) -> Result<String, String> {
    // Per open section: (its condition holds, its `#else` was seen, the lines around it kept).
    let mut open: Vec<(bool, bool, bool)> = Vec::new();
    let mut out = String::with_capacity(src.len());
    let keeping =
        |open: &[(bool, bool, bool)]| open.last().is_none_or(|&(cond, in_else, outer)| outer && cond != in_else);
    for (n, line) in src.lines().enumerate() {
        let t = line.trim();
        let at = || format!("line {}: `{t}`", n + 1);
        if let Some(flag) = t.strip_prefix(IF) {
            let cond = flag_value(src, flag.trim()).ok_or_else(|| {
                format!("{}: `{}` is no module-scope `const {0}: bool = true|false;`", at(), flag.trim())
            })?;
            open.push((cond, false, keeping(&open)));
        } else if t == ELSE {
            match open.last_mut() {
                Some(top) if !top.1 => top.1 = true,
                _ => return Err(format!("{}: no `#if` section to continue", at())),
            }
        } else if t == ENDIF {
            open.pop().ok_or_else(|| format!("{}: no `#if` section to end", at()))?;
        } else if [IF.trim_end(), ELSE, ENDIF].iter().any(|d| t.starts_with(d)) {
            return Err(format!("{}: a section directive is `{IF}FLAG`, `{ELSE}` or `{ENDIF}`", at()));
        } else if keeping(&open) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !open.is_empty() {
        return Err(format!("{} `#if` section(s) without `{ENDIF}`", open.len()));
    }
    Ok(out)
}

/// The value of `const NAME: bool = true;` or `= false;` in `module`.
fn flag_value(module: &str, name: &str) -> Option<bool> {
    if !is_ident(name) {
        return None;
    }
    module.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("const ")?.strip_prefix(name)?.strip_prefix(": bool = ")?;
        match rest.split(';').next()?.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    })
}

/// The marker that ends a loop line to unroll.
pub const UNROLL: &str = "// #unroll";
/// Most copies one marked loop may make.
const MAX_UNROLL: u32 = 64;

/// Replaces every loop written `for (var i = 0u; i < N; i++) { // #unroll` (N a literal such as
/// `4u`, or a module-scope `const N: u32 = ...;` whose value is literals and other such consts
/// joined by `+ - * /`, evaluated left to right) by N blocks `{ ... }`, the body with `i` as
/// `0u`, `1u`, ...; marked loops may nest. The closing brace must be alone on its line.
pub fn unroll(src: &str) -> Result<String, String> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = String::with_capacity(src.len());
    for line in unroll_lines(&lines, src)? {
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

fn unroll_lines(lines: &[&str], module: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at];
        let Some(head) = line.trim_end().strip_suffix(UNROLL) else {
            out.push(line.to_string());
            at += 1;
            continue;
        };
        let (var, count) = parse_loop(head.trim(), module).map_err(|e| format!("`{}`: {e}", line.trim()))?;
        let end =
            closing_line(lines, at).ok_or_else(|| format!("`{}`: no closing brace alone on a line", line.trim()))?;
        let body = unroll_lines(&lines[at + 1..end], module)?;
        let indent = &line[..line.len() - line.trim_start().len()];
        for k in 0..count {
            out.push(format!("{indent}{{"));
            out.extend(body.iter().map(|b| substitute(b, var, &format!("{k}u"))));
            out.push(format!("{indent}}}"));
        }
        at = end + 1;
    }
    Ok(out)
}

/// `for (var i = 0u; i < N; i++) {` -> ("i", N).
fn parse_loop<'a>(head: &'a str, module: &str) -> Result<(&'a str, u32), String> {
    let shape = "an unrolled loop is written `for (var i = 0u; i < N; i++) {`";
    let rest = head.strip_prefix("for (var ").ok_or(shape)?;
    let (var, rest) = rest.split_once(" = 0u; ").ok_or(shape)?;
    let rest = rest.strip_prefix(var).and_then(|r| r.strip_prefix(" < ")).ok_or(shape)?;
    let (bound, rest) = rest.split_once("; ").ok_or(shape)?;
    if rest.strip_prefix(var) != Some("++) {") || !is_ident(var) {
        return Err(shape.into());
    }
    let count = literal(bound).or_else(|| const_value(module, bound)).ok_or_else(|| {
        format!("the bound `{bound}` is neither a literal nor a module-scope `const {bound}: u32 = ..u;`")
    })?;
    if count > MAX_UNROLL {
        return Err(format!("{count} copies; at most {MAX_UNROLL}"));
    }
    Ok((var, count))
}

fn is_ident(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn literal(s: &str) -> Option<u32> {
    s.strip_suffix('u').unwrap_or(s).parse().ok()
}

/// The value of `const NAME: u32 = <expression>;` in `module` (see [`unroll`]).
fn const_value(module: &str, name: &str) -> Option<u32> {
    const_value_at(module, name, 0)
}

fn const_value_at(module: &str, name: &str, depth: usize) -> Option<u32> {
    if depth > 8 {
        return None;
    }
    let expr = module.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("const ")?.strip_prefix(name)?.strip_prefix(": u32 = ")?;
        rest.split(';').next()
    })?;
    let term = |t: &str| literal(t).or_else(|| const_value_at(module, t, depth + 1));
    let mut tokens = expr.split_whitespace();
    let mut value = term(tokens.next()?)?;
    while let Some(op) = tokens.next() {
        let rhs = term(tokens.next()?)?;
        value = match op {
            "+" => value.checked_add(rhs)?,
            "-" => value.checked_sub(rhs)?,
            "*" => value.checked_mul(rhs)?,
            "/" => value.checked_div(rhs)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The line holding the `}` that closes the brace opened on line `open`.
fn closing_line(lines: &[&str], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, line) in lines.iter().enumerate().skip(open) {
        let code = line.split("//").next().unwrap_or("");
        depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
        if depth == 0 {
            return (i > open && line.trim() == "}").then_some(i);
        }
    }
    None
}

/// `line` with every identifier `var` (not a field or swizzle after a `.`) replaced by `value`.
fn substitute(line: &str, var: &str, value: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_alphabetic() || c == '_' {
            let len = rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).unwrap_or(rest.len());
            let word = &rest[..len];
            out.push_str(if word == var && prev != Some('.') { value } else { word });
            rest = &rest[len..];
            prev = word.chars().last();
        } else if c.is_ascii_digit() {
            // A number with a suffix (`4u`, `1e3`) is one token, not an identifier.
            let len = rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '.')).unwrap_or(rest.len());
            out.push_str(&rest[..len]);
            rest = &rest[len..];
            prev = out.chars().last();
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            prev = Some(c);
        }
    }
    out
}
