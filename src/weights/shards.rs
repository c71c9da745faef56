//! Sharded checkpoints: `model.safetensors.index.json` or `pytorch_model.bin.index.json`, whose
//! `weight_map` names the shard file of every tensor (as `save_pretrained(max_shard_size=...)`
//! writes them). Every shard is opened, and every tensor must lie in exactly the shard the index
//! names.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::source::{file_err, WeightSource};
use crate::Result;

/// The index file: only `weight_map` matters (`metadata.total_size` is informative).
#[derive(Deserialize)]
struct Index {
    weight_map: WeightMap,
}

/// `weight_map` as its pairs, in file order, so that a name given twice is seen (a map would
/// keep one of them silently).
struct WeightMap(Vec<(String, String)>);

impl<'de> Deserialize<'de> for WeightMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = WeightMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of tensor name to shard file name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<WeightMap, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(WeightMap(pairs))
            }
        }
        d.deserialize_map(Pairs)
    }
}

/// A shard path must stay inside the index's directory: relative, without `..`.
fn inside(file: &str) -> bool {
    let p = Path::new(file);
    !file.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The index's tensor -> shard map, checked: every shard path inside the directory, no tensor
/// listed twice, at least one tensor.
fn read_index(index: &Path) -> Result<BTreeMap<String, String>> {
    let err = |m: String| file_err(index, m);
    let text = std::fs::read_to_string(index).map_err(|e| err(format!("cannot read: {e}")))?;
    let parsed: Index =
        serde_json::from_str(&text).map_err(|e| err(format!("not a checkpoint index (want a `weight_map`): {e}")))?;
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for (name, file) in parsed.weight_map.0 {
        if !inside(&file) {
            return Err(err(format!("shard `{file}` of `{name}` lies outside the index's directory")));
        }
        if want.insert(name.clone(), file).is_some() {
            return Err(err(format!("tensor `{name}` is listed twice")));
        }
    }
    if want.is_empty() {
        return Err(err("the index lists no tensors".into()));
    }
    Ok(want)
}

/// The shard files a sharded checkpoint's index names (relative to its directory), sorted, each
/// once.
pub fn shard_files(index: &Path) -> Result<Vec<String>> {
    let mut files: Vec<String> = read_index(index)?.into_values().collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Opens the shards `index` names; returns them and, for every tensor, its shard's position.
pub(super) fn open_sharded(index: &Path) -> Result<(Vec<WeightSource>, BTreeMap<String, usize>)> {
    let err = |m: String| file_err(index, m);
    let want = read_index(index)?;
    let files = shard_files(index)?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut sources = Vec::with_capacity(files.len());
    let mut located = BTreeMap::new();
    for (i, file) in files.iter().enumerate() {
        let path = dir.join(file);
        if !path.is_file() {
            return Err(err(format!("shard `{file}` named by the index is missing")));
        }
        let source = WeightSource::open(&path)?;
        for name in source.names() {
            match want.get(name) {
                Some(f) if f == file => {}
                Some(f) => return Err(err(format!("tensor `{name}` is in `{file}`, but the index says `{f}`"))),
                None => return Err(err(format!("tensor `{name}` of `{file}` is not in the index"))),
            }
            located.insert(name.to_string(), i);
        }
        sources.push(source);
    }
    if let Some((name, file)) = want.iter().find(|(n, _)| !located.contains_key(*n)) {
        return Err(err(format!("tensor `{name}` is not in `{file}`, where the index says it is")));
    }
    Ok((sources, located))
}
