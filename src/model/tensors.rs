//! The tensors inference reads from a checkpoint, with their shapes, derived from the config
//! alone (names as transformers' BarkModel state dict has them, weight norm folded into
//! `*.conv.weight`, fine heads listed even where the file leaves them tied).

use super::config::{BarkConfig, CodecConfig, FineConfig, SubModelConfig};

/// `(name, shape)` of every tensor generation and decoding use, in a stable order. The codec's
/// encoder and the quantizer's training buffers are not listed: Bark never runs them.
pub fn inference_tensors(cfg: &BarkConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    causal("semantic", &cfg.semantic_config, &mut out);
    causal("coarse_acoustics", &cfg.coarse_acoustics_config, &mut out);
    fine("fine_acoustics", &cfg.fine_acoustics_config, &mut out);
    codec_decoder("codec_model", &cfg.codec_config, cfg.fine_acoustics_config.n_codes_total, &mut out);
    out
}

fn push(out: &mut Vec<(String, Vec<usize>)>, name: String, shape: &[usize]) {
    out.push((name, shape.to_vec()));
}

/// The blocks both GPTs share; `ln_bias`: layer norms have a bias.
fn blocks(p: &str, c: &SubModelConfig, ln_bias: bool, out: &mut Vec<(String, Vec<usize>)>) {
    let h = c.hidden_size;
    push(out, format!("{p}.position_embeds_layer.weight"), &[c.block_size, h]);
    for i in 0..c.num_layers {
        let l = format!("{p}.layers.{i}");
        for ln in ["layernorm_1", "layernorm_2"] {
            push(out, format!("{l}.{ln}.weight"), &[h]);
            if ln_bias {
                push(out, format!("{l}.{ln}.bias"), &[h]);
            }
        }
        let linears = [
            ("attn.att_proj", 3 * h, h),
            ("attn.out_proj", h, h),
            ("mlp.in_proj", 4 * h, h),
            ("mlp.out_proj", h, 4 * h),
        ];
        for (name, rows, cols) in linears {
            push(out, format!("{l}.{name}.weight"), &[rows, cols]);
            if c.bias {
                push(out, format!("{l}.{name}.bias"), &[rows]);
            }
        }
    }
    push(out, format!("{p}.layernorm_final.weight"), &[h]);
    if ln_bias {
        push(out, format!("{p}.layernorm_final.bias"), &[h]);
    }
}

fn causal(p: &str, c: &SubModelConfig, out: &mut Vec<(String, Vec<usize>)>) {
    push(out, format!("{p}.input_embeds_layer.weight"), &[c.input_vocab_size, c.hidden_size]);
    blocks(p, c, c.bias, out);
    push(out, format!("{p}.lm_head.weight"), &[c.output_vocab_size, c.hidden_size]);
}

/// The fine model's layer norms always have a bias (transformers builds them with bias=True).
fn fine(p: &str, c: &FineConfig, out: &mut Vec<(String, Vec<usize>)>) {
    let m = &c.model;
    for j in 0..c.n_codes_total {
        push(out, format!("{p}.input_embeds_layers.{j}.weight"), &[m.input_vocab_size, m.hidden_size]);
    }
    blocks(p, m, true, out);
    for j in 0..c.n_heads() {
        push(out, format!("{p}.lm_heads.{j}.weight"), &[m.output_vocab_size, m.hidden_size]);
    }
}

/// A weight-normed convolution: folded weight and bias.
fn conv(out: &mut Vec<(String, Vec<usize>)>, name: String, weight: &[usize], bias: usize) {
    push(out, format!("{name}.conv.weight"), weight);
    push(out, format!("{name}.conv.bias"), &[bias]);
}

/// EnCodec's decoder (transformers' EncodecDecoder layer numbering) and the first `n_q` codebooks.
fn codec_decoder(p: &str, c: &CodecConfig, n_q: usize, out: &mut Vec<(String, Vec<usize>)>) {
    for q in 0..n_q {
        push(out, format!("{p}.quantizer.layers.{q}.codebook.embed"), &[c.codebook_size, c.codebook_dim()]);
    }
    let d = format!("{p}.decoder.layers");
    let mut ch = c.decoder_channels();
    conv(out, format!("{d}.0"), &[ch, c.hidden_size, c.kernel_size], ch);
    for k in 0..c.num_lstm_layers {
        for kind in ["ih", "hh"] {
            push(out, format!("{d}.1.lstm.weight_{kind}_l{k}"), &[4 * ch, ch]);
            push(out, format!("{d}.1.lstm.bias_{kind}_l{k}"), &[4 * ch]);
        }
    }
    let mut idx = 2;
    for &ratio in &c.upsampling_ratios {
        // ELU at idx, then the transposed convolution: weight (in, out, k).
        idx += 1;
        conv(out, format!("{d}.{idx}"), &[ch, ch / 2, 2 * ratio], ch / 2);
        idx += 1;
        ch /= 2;
        let hidden = ch / c.compress;
        for _ in 0..c.num_residual_layers {
            let r = format!("{d}.{idx}");
            conv(out, format!("{r}.block.1"), &[hidden, ch, c.residual_kernel_size], hidden);
            conv(out, format!("{r}.block.3"), &[ch, hidden, 1], ch);
            if c.use_conv_shortcut {
                conv(out, format!("{r}.shortcut"), &[ch, ch, 1], ch);
            }
            idx += 1;
        }
    }
    // ELU at idx, then the last convolution.
    conv(out, format!("{d}.{}", idx + 1), &[c.audio_channels, ch, c.last_kernel_size], c.audio_channels);
}
