//! The one preprocessing step WGSL gets here: a line `// #include NAME` is replaced by the text
//! of `shaders/common/NAME.wgsl`, so code several kernels need (erf, the linear layers'
//! epilogue) is written once. The directive is a comment, so editors and formatters leave it
//! alone. A file is included at most once per shader (later directives for it are dropped),
//! which lets one common file include another that the kernel includes too.
//!
//! build.rs runs this at build time (it includes this file with `#[path]`) and embeds the
//! expanded sources; the naga test expands the files on disk again and checks they agree.

/// The directive's prefix; the rest of the line (trimmed) is the common file's stem.
pub const DIRECTIVE: &str = "// #include ";

/// Expands every directive in `src`. `read(name)` returns `shaders/common/{name}.wgsl`.
pub fn expand(src: &str, read: &mut dyn FnMut(&str) -> Result<String, String>) -> Result<String, String> {
    let mut seen = Vec::new();
    let mut out = String::with_capacity(src.len());
    expand_into(src, read, &mut seen, &mut out, 0)?;
    Ok(out)
}

fn expand_into(
    src: &str,
    read: &mut dyn FnMut(&str) -> Result<String, String>,
    seen: &mut Vec<String>,
    out: &mut String,
    depth: usize,
) -> Result<(), String> {
    // Includes only nest a level or two; deeper means a cycle the `seen` list did not stop.
    if depth > 8 {
        return Err("includes nested more than 8 deep".into());
    }
    for line in src.lines() {
        let Some(name) = line.trim_start().strip_prefix(DIRECTIVE).map(str::trim) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`{line}`: an include names a file stem in shaders/common/"));
        }
        if seen.iter().any(|s| s == name) {
            continue;
        }
        seen.push(name.to_string());
        let text = read(name).map_err(|e| format!("include {name}: {e}"))?;
        expand_into(&text, read, seen, out, depth + 1)?;
    }
    Ok(())
}
