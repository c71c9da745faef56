//! config.json parsing: the fixtures (written by transformers' save_pretrained), derived codec
//! quantities, and every kind of bad file giving an error that names the file and the field.

use std::path::{Path, PathBuf};

use bark_wgpu::model::hubert::HubertConfig;
use bark_wgpu::model::{inference_tensors, BarkConfig};
use bark_wgpu::Error;

fn fixture(variant: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(variant)
}

fn raw_json(variant: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(variant).join("config.json")).unwrap()).unwrap()
}

/// Parses an edited config and returns the error message, which must name the file.
fn error_of(json: &serde_json::Value) -> String {
    let path = Path::new("/somewhere/edited-config.json");
    match BarkConfig::from_json(&json.to_string(), path) {
        Ok(c) => panic!("accepted a bad config: {c:?}"),
        Err(e @ Error::File { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("edited-config.json"), "error does not name the file: {msg}");
            msg
        }
        Err(e) => panic!("wrong error kind: {e}"),
    }
}

#[test]
fn tiny_fixture_sizes_come_from_the_file() {
    let c = BarkConfig::load(fixture("tiny")).unwrap();
    let s = &c.semantic_config;
    assert_eq!(
        (s.input_vocab_size, s.output_vocab_size, s.hidden_size, s.num_layers, s.num_heads),
        (129600, 10048, 16, 2, 2)
    );
    assert_eq!((s.block_size, s.bias, s.head_dim()), (1024, false, 8));
    let co = &c.coarse_acoustics_config;
    assert_eq!((co.input_vocab_size, co.output_vocab_size, co.bias), (12096, 12096, false));
    let f = &c.fine_acoustics_config;
    assert_eq!(
        (f.model.input_vocab_size, f.model.output_vocab_size, f.n_codes_total, f.n_codes_given),
        (1056, 1056, 8, 1)
    );
    assert_eq!(f.n_heads(), 7);
    let k = &c.codec_config;
    assert_eq!((k.hidden_size, k.num_filters, k.codebook_dim(), k.codebook_size), (8, 2, 8, 1024));
    assert_eq!((k.hop_length(), k.frame_rate(), k.codebook_nbits()), (320, 75, 10));
    // target_bandwidths [1.5, 3, 6]: 6 kbps / (75 Hz * 10 bits) = 8 quantizers.
    assert_eq!((k.num_quantizers(), k.quantizers_for_bandwidth(6.0), k.quantizers_for_bandwidth(1.5)), (8, 8, 2));
    assert_eq!(k.decoder_channels(), 32);
}

#[test]
fn bias_variant_differs_where_its_file_does() {
    let c = BarkConfig::load(fixture("tiny-bias").join("config.json")).unwrap();
    for s in [&c.semantic_config, &c.coarse_acoustics_config, &c.fine_acoustics_config.model] {
        assert_eq!((s.hidden_size, s.num_layers, s.num_heads, s.block_size, s.bias), (8, 3, 2, 256, true));
    }
}

#[test]
fn published_encodec_defaults() {
    // A codec_config of `{}` takes transformers' EncodecConfig() defaults, which are EnCodec 24 kHz:
    // 32 quantizers at 24 kbps, 8 at Bark's 6 kbps, hop 320, decoder from 512 channels.
    let mut j = raw_json("tiny");
    j["codec_config"] = serde_json::json!({});
    let c = BarkConfig::from_json(&j.to_string(), Path::new("x.json")).unwrap();
    let k = &c.codec_config;
    assert_eq!(
        (k.num_quantizers(), k.quantizers_for_bandwidth(6.0), k.hop_length(), k.decoder_channels()),
        (32, 8, 320, 512)
    );
}

#[test]
fn missing_fields_take_transformers_defaults_and_aliases_work() {
    let mut j = raw_json("tiny");
    let sem = j["semantic_config"].as_object_mut().unwrap();
    sem.remove("bias");
    sem.remove("block_size");
    let layers = sem.remove("num_layers").unwrap();
    sem.insert("num_hidden_layers".into(), layers);
    let c = BarkConfig::from_json(&j.to_string(), Path::new("x.json")).unwrap();
    assert_eq!((c.semantic_config.bias, c.semantic_config.block_size, c.semantic_config.num_layers), (true, 1024, 2));
}

#[test]
fn inference_tensor_list_follows_the_config() {
    let c = BarkConfig::load(fixture("tiny")).unwrap();
    let list = inference_tensors(&c);
    let get = |n: &str| list.iter().find(|(name, _)| name == n).map(|(_, s)| s.clone());
    assert_eq!(get("semantic.input_embeds_layer.weight"), Some(vec![129600, 16]));
    assert_eq!(get("semantic.layers.1.attn.att_proj.weight"), Some(vec![48, 16]));
    assert_eq!(get("semantic.layers.0.attn.att_proj.bias"), None, "bias=False has no linear biases");
    assert_eq!(get("semantic.layers.0.layernorm_1.bias"), None);
    assert_eq!(get("fine_acoustics.layers.0.layernorm_1.bias"), Some(vec![16]), "fine LNs always have a bias");
    assert_eq!(get("fine_acoustics.lm_heads.6.weight"), Some(vec![1056, 16]));
    assert_eq!(get("codec_model.decoder.layers.3.conv.weight"), Some(vec![32, 16, 16]), "ConvTranspose (in,out,k)");
    assert_eq!(get("codec_model.decoder.layers.15.conv.weight"), Some(vec![1, 2, 7]));
    assert_eq!(get("codec_model.quantizer.layers.7.codebook.embed"), Some(vec![1024, 8]));
    assert_eq!(get("codec_model.quantizer.layers.8.codebook.embed"), None);
    let b = BarkConfig::load(fixture("tiny-bias")).unwrap();
    let list = inference_tensors(&b);
    assert!(list.iter().any(|(n, s)| n == "coarse_acoustics.layers.2.mlp.in_proj.bias" && s == &vec![32]));
    assert!(list.iter().any(|(n, s)| n == "semantic.position_embeds_layer.weight" && s == &vec![256, 8]));
}

#[test]
fn missing_file_names_the_file() {
    let e = BarkConfig::load("/nonexistent/bark/config.json").unwrap_err().to_string();
    assert!(e.contains("/nonexistent/bark/config.json"), "{e}");
}

#[test]
fn bad_json_and_missing_sections() {
    let path = Path::new("/somewhere/edited-config.json");
    let e = BarkConfig::from_json("{ not json", path).unwrap_err().to_string();
    assert!(e.contains("edited-config.json") && e.contains("invalid JSON"), "{e}");
    let e = BarkConfig::from_json("[1, 2]", path).unwrap_err().to_string();
    assert!(e.contains("not an object"), "{e}");

    let mut j = raw_json("tiny");
    j["codec_config"] = serde_json::json!(7);
    assert!(error_of(&j).contains("`codec_config` is not an object"));
    let mut j = raw_json("tiny");
    j["model_type"] = serde_json::json!("gpt2");
    assert!(error_of(&j).contains("gpt2"));
}

#[test]
fn wrong_types_name_the_field() {
    let cases = [
        ("semantic_config", "hidden_size", serde_json::json!("16")),
        ("coarse_acoustics_config", "num_layers", serde_json::json!(-2)),
        ("fine_acoustics_config", "n_codes_total", serde_json::json!(8.5)),
        ("semantic_config", "bias", serde_json::json!("no")),
        ("codec_config", "upsampling_ratios", serde_json::json!([8, "5"])),
        ("codec_config", "sampling_rate", serde_json::Value::Null),
    ];
    for (section, field, value) in cases {
        let mut j = raw_json("tiny");
        j[section][field] = value;
        let e = error_of(&j);
        assert!(e.contains(&format!("`{section}.{field}`")), "{section}.{field}: {e}");
    }
}

#[test]
fn impossible_values_are_rejected() {
    let cases: [(&str, &str, serde_json::Value, &str); 8] = [
        ("semantic_config", "hidden_size", serde_json::json!(0), "hidden_size"),
        ("semantic_config", "num_heads", serde_json::json!(3), "not divisible"),
        ("coarse_acoustics_config", "input_vocab_size", serde_json::json!(1u64 << 40), "input_vocab_size"),
        ("fine_acoustics_config", "n_codes_given", serde_json::json!(8), "n_codes_given"),
        ("codec_config", "upsampling_ratios", serde_json::json!([]), "upsampling_ratios"),
        ("codec_config", "codebook_dim", serde_json::json!(16), "codebook_dim"),
        ("codec_config", "norm_type", serde_json::json!("time_group_norm"), "norm_type"),
        ("codec_config", "target_bandwidths", serde_json::json!([1.5]), "quantizers"),
    ];
    for (section, field, value, needle) in cases {
        let mut j = raw_json("tiny");
        j[section][field] = value;
        let e = error_of(&j);
        assert!(e.contains(section) && e.contains(needle), "{section}.{field}: {e}");
    }
}

#[test]
fn hubert_config_defaults_are_base_and_unsupported_variants_are_refused() {
    // transformers' HubertConfig() is hubert-base-ls960: 49 frames from a second (20 ms hop, a
    // 400-sample window).
    let base = HubertConfig::default();
    assert_eq!((base.hidden_size, base.num_attention_heads, base.conv_dim[0]), (768, 12, 512));
    assert_eq!((base.frames(16_000), base.frames(400), base.frames(399)), (49, 1, 0));
    let cfg = HubertConfig::load(fixture("hubert-tiny")).unwrap();
    assert_eq!((cfg.hidden_size, cfg.num_hidden_layers, cfg.num_conv_pos_embeddings), (32, 10, 16));
    let path = Path::new("/somewhere/hubert-config.json");
    for (key, value, needle) in [
        ("do_stable_layer_norm", serde_json::json!(true), "do_stable_layer_norm"),
        ("feat_extract_norm", serde_json::json!("layer"), "feat_extract_norm"),
        ("hidden_act", serde_json::json!("relu"), "gelu"),
        ("num_attention_heads", serde_json::json!(5), "heads"),
        ("num_conv_pos_embedding_groups", serde_json::json!(3), "groups"),
        ("conv_stride", serde_json::json!([5, 2]), "one length"),
        ("conv_kernel", serde_json::json!([10, 3, 3, 3, 3, 2, 0]), "is 0"),
        ("hidden_size", serde_json::json!("big"), "invalid HuBERT config"),
    ] {
        let mut json = raw_json("hubert-tiny");
        json[key] = value;
        let err = HubertConfig::from_json(&json.to_string(), path).err().unwrap_or_else(|| panic!("{key} accepted"));
        let msg = err.to_string();
        assert!(msg.contains("hubert-config.json") && msg.contains(needle), "{key}: {msg}");
    }
}

fn checkpoint_config(name: &str) -> PathBuf {
    fixture("checkpoints/configs").join(name)
}

#[test]
fn a_config_written_by_transformers_4_31_reads_as_todays() {
    // scripts/make_checkpoint_fixtures.py wrote it with transformers 4.31.0: `torch_dtype`, and
    // every PretrainedConfig key of that version (generation settings, id2label, ...) in each
    // sub-config.
    let path = checkpoint_config("transformers-4.31.json");
    let raw: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(raw["torch_dtype"], "float32");
    assert_eq!(raw["semantic_config"]["transformers_version"], "4.31.0");
    assert!(raw.get("dtype").is_none() && raw["fine_acoustics_config"].get("num_beams").is_some());
    assert_eq!(BarkConfig::load(&path).unwrap(), BarkConfig::load(fixture("tiny")).unwrap());
}

#[test]
fn a_config_of_only_the_non_default_keys_takes_transformers_defaults() {
    // The script checked that transformers' from_pretrained reads this file to the tiny sizes.
    let path = checkpoint_config("minimal.json");
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(!raw.contains("block_size") && !raw.contains("n_codes_total") && !raw.contains("model_type"), "{raw}");
    assert_eq!(BarkConfig::load(&path).unwrap(), BarkConfig::load(fixture("tiny")).unwrap());
}

#[test]
fn dtype_keys_and_unknown_keys_change_nothing() {
    let want = BarkConfig::load(fixture("tiny")).unwrap();
    let path = Path::new("/somewhere/config.json");
    for (key, value) in [("torch_dtype", "bfloat16"), ("dtype", "float16"), ("torch_dtype", "float32")] {
        let mut j = raw_json("tiny");
        let o = j.as_object_mut().unwrap();
        o.remove("dtype");
        o.insert(key.into(), value.into());
        o.insert("some_future_key".into(), serde_json::json!({"nested": [1, 2]}));
        j["semantic_config"]["attn_implementation"] = "sdpa".into();
        j["codec_config"]["torch_dtype"] = serde_json::Value::Null;
        assert_eq!(BarkConfig::from_json(&j.to_string(), path).unwrap(), want, "{key}={value}");
    }
}

#[test]
fn a_sub_config_left_out_or_null_takes_transformers_defaults() {
    use bark_wgpu::model::{FineConfig, SubModelConfig};
    let path = Path::new("/somewhere/config.json");
    for absent in [None, Some(serde_json::Value::Null)] {
        let mut j = raw_json("tiny");
        let o = j.as_object_mut().unwrap();
        match &absent {
            None => o.remove("fine_acoustics_config"),
            Some(v) => o.insert("fine_acoustics_config".into(), v.clone()),
        };
        let c = BarkConfig::from_json(&j.to_string(), path).unwrap();
        // BarkFineConfig(): the BarkSubModelConfig defaults, 8 codebooks, 1 given.
        let want = FineConfig { model: SubModelConfig::default(), n_codes_total: 8, n_codes_given: 1 };
        assert_eq!(c.fine_acoustics_config, want, "{absent:?}");
        assert_eq!((want.model.hidden_size, want.model.num_layers, want.model.block_size), (768, 12, 1024));
        assert_eq!(c.semantic_config, BarkConfig::load(fixture("tiny")).unwrap().semantic_config);
    }
}

#[test]
fn absurd_sizes_are_refused_naming_the_key_and_the_limit() {
    // Each far past bark large (hidden 1024, 24 layers, 16 heads, block 1024, vocabularies up to
    // 129600, 8 codebooks), refused at load, before any buffer is sized from it.
    let cases: [(&str, &str, serde_json::Value, &str); 14] = [
        (
            "semantic_config",
            "hidden_size",
            serde_json::json!(1_000_000_000),
            "hidden_size is 1000000000 (want 1..=16384)",
        ),
        ("semantic_config", "num_layers", serde_json::json!(1_000_000), "num_layers is 1000000 (want 1..=256)"),
        ("coarse_acoustics_config", "num_heads", serde_json::json!(1024), "num_heads is 1024 (want 1..=256)"),
        ("coarse_acoustics_config", "output_vocab_size", serde_json::json!(1u64 << 40), "(want 1..=1048576)"),
        ("semantic_config", "block_size", serde_json::json!(0), "block_size is 0 (want 1..=16384)"),
        ("semantic_config", "block_size", serde_json::json!(1_000_000_000), "block_size is 1000000000"),
        ("fine_acoustics_config", "hidden_size", serde_json::json!(1001), "not divisible by num_heads"),
        ("fine_acoustics_config", "n_codes_total", serde_json::json!(1000), "n_codes_total is 1000 (want 1..=32)"),
        ("fine_acoustics_config", "n_codes_total", serde_json::json!(64), "n_codes_total is 64"),
        ("semantic_config", "input_vocab_size", serde_json::json!(1 << 20), "over 1073741824 weights"),
        ("codec_config", "num_lstm_layers", serde_json::json!(1 << 20), "num_lstm_layers is 1048576 (want at most 16)"),
        ("codec_config", "upsampling_ratios", serde_json::json!(vec![1024; 8]), "multiply to over 384000"),
        ("codec_config", "target_bandwidths", serde_json::json!([1e300]), "(want at most 1024)"),
        (
            "codec_config",
            "sampling_rate",
            serde_json::json!(1u64 << 40),
            "sampling_rate is 1099511627776 (want 1..=384000)",
        ),
    ];
    for (section, field, value, needle) in cases {
        let mut j = raw_json("tiny");
        j[section][field] = value.clone();
        if field == "input_vocab_size" {
            // Under each limit alone, over the one on a table's weights.
            j[section]["hidden_size"] = serde_json::json!(2048);
            j[section]["num_heads"] = serde_json::json!(16);
        }
        let e = error_of(&j);
        assert!(e.contains(section) && e.contains(needle), "{section}.{field} = {value}: {e}");
    }
}
