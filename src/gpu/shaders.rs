//! The WGSL sources, embedded at build time, and the small specialiser that makes variants.
//!
//! A shader file, its `// #include` lines expanded (see [`super::wgsl_include`]), is plain valid
//! WGSL with default values. A variant rewrites the right-hand
//! side of named module-scope declarations: `const WG: u32 = 64u;` or `alias T = f32;`.
//! So the naga test validates the files as they are, and the variants by the same rewrite.

include!(concat!(env!("OUT_DIR"), "/shaders.rs"));

/// The source of `shaders/{name}.wgsl`.
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
