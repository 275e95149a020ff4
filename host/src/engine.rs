//! The inference engine: a llama-family model on the GPU, with batched
//! generation, continuation scoring and final hidden states.
//!
//! The engine owns one KV cache with a slot per sequence. Prompts are
//! prefilled in chunks of up to [`MAX_ROWS`] tokens drawn from all
//! sequences at once; decoding then runs one row per unfinished sequence.
//! Logits are only ever computed for up to [`HEAD_ROWS`] rows at a time, so
//! no [tokens x vocabulary] tensor has to fit in one binding.

pub mod adapter;
pub mod forward;
pub mod reference;
pub mod weights;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use laser_gpu::Gpu;
use laser_gpu::sampling::SampleParams;
use laser_model::chat::ChatTemplate;
use laser_model::checkpoint::Checkpoint;
use laser_model::config::ModelConfig;
use laser_model::tokenizer::Tokenizer;

use adapter::Adapter;
use forward::{Activations, Kernels, KvCache, Row};
use weights::Weights;

/// The maximum number of rows in one forward call: one prefill chunk.
pub const MAX_ROWS: u32 = 512;

/// The maximum number of rows whose logits are computed at once:
/// [HEAD_ROWS, V] f32 is 12 MiB for a 49,152-token vocabulary.
pub const HEAD_ROWS: u32 = 64;

/// How to sample new tokens. The defaults are greedy decoding of up to 256
/// tokens, with no stop strings.
#[derive(Clone, Debug)]
pub struct SamplingConfig {
    /// 0 samples greedily.
    pub temperature: f32,
    /// 0 turns top-k off.
    pub top_k: u32,
    /// 1 turns top-p (nucleus) sampling off.
    pub top_p: f32,
    pub seed: u64,
    pub max_new_tokens: u32,
    /// Generation stops when the text contains one of these; the text is
    /// cut before it.
    pub stop: Vec<String>,
    /// Keep generating past end-of-sequence tokens (for benchmarks).
    pub ignore_eos: bool,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            max_new_tokens: 256,
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// The reason a sequence stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token was drawn (it is not in the output).
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_new_tokens` was reached.
    Length,
}

/// One generated sequence.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Generation {
    /// New token ids, without the prompt and without the EOS token. After a
    /// stop string, the ids up to the one in which `text` ends.
    pub tokens: Vec<u32>,
    /// The decoded text of `tokens`, cut before a stop string.
    pub text: String,
    /// The log-probability of each token in `tokens` under the model
    /// (temperature 1, before top-k or top-p).
    pub logprobs: Vec<f32>,
    /// The end-of-sequence token that ended the sequence, when one did. A
    /// model may have several.
    pub eos_token: Option<u32>,
    /// The log-probability of `eos_token`, taken as for `logprobs`.
    pub eos_logprob: Option<f32>,
    pub finish: FinishReason,
}

impl Generation {
    /// Returns the log-probabilities of the response as training scores it:
    /// each token's, then the end-of-sequence token's when one ended it.
    pub fn response_logprobs(&self) -> impl Iterator<Item = f64> + '_ {
        self.logprobs
            .iter()
            .chain(&self.eos_logprob)
            .map(|&logprob| f64::from(logprob))
    }
}

/// The pooling of a prompt's tokens into one vector of the model's width.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The mean of the final hidden states over the prompt's tokens.
    #[default]
    Mean,
    /// The final hidden state of the last token.
    Last,
    /// The mean of the prompt's token embeddings, the input of the first
    /// block. It needs no forward pass through the blocks, and a LoRA
    /// adapter does not change it.
    Embedding,
}

/// A model loaded on the GPU, ready to generate and score.
pub struct Engine {
    pub gpu: Gpu,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    /// The model's chat template, or why it failed to compile, which
    /// matters only to callers that render a chat prompt.
    chat_template: Result<ChatTemplate, String>,
    /// The checkpoint the model came from, for errors.
    path: std::path::PathBuf,
    kernels: Kernels,
    weights: Weights,
    act: Activations,
    head: HeadBuffers,
    cache: Option<KvCache>,
    /// LoRA adapter added to every forward pass, if any.
    adapter: Option<Adapter>,
}

/// Buffers for the final norm, the LM head and what follows it.
struct HeadBuffers {
    /// u32 [R]: rows of `act.x` to gather.
    indices: wgpu::Buffer,
    /// f32 [R, C]
    gathered: wgpu::Buffer,
    /// f32 [R, C]
    normed: wgpu::Buffer,
    /// f32 [R, V]
    logits: wgpu::Buffer,
    /// u32 [R]: target tokens for `token_logprob`.
    targets: wgpu::Buffer,
    /// f32 [R]
    logprobs: wgpu::Buffer,
    /// SampleParams [R]
    params: wgpu::Buffer,
    /// u32 [R]
    sampled: wgpu::Buffer,
}

impl Engine {
    /// Loads the checkpoint at `path` (a `.gguf` file or a Hugging Face
    /// folder) onto `gpu`.
    ///
    /// # Errors
    ///
    /// Fails when the checkpoint is invalid or unsupported, or its weights do
    /// not fit on the device.
    pub fn load(gpu: Gpu, path: &Path) -> Result<Self> {
        let advice = crate::fetch::refetch_advice(path);
        let checkpoint =
            Checkpoint::open(path).map_err(|err| anyhow::anyhow!("{err:#}{advice}"))?;
        Self::from_checkpoint(gpu, &checkpoint).map_err(|err| {
            anyhow::anyhow!("failed to load model {}: {err:#}{advice}", path.display())
        })
    }

    /// Uploads an opened checkpoint onto `gpu`.
    ///
    /// # Errors
    ///
    /// As [`Engine::load`].
    pub fn from_checkpoint(gpu: Gpu, checkpoint: &Checkpoint) -> Result<Self> {
        let config = checkpoint.config().clone();
        let tokenizer = checkpoint.tokenizer()?;
        warn_on_vocab_mismatch(config.vocab_size, tokenizer.vocab_size());
        let chat_template = checkpoint.chat_template().map_err(|err| format!("{err:#}"));
        let kernels = Kernels::new(&gpu)?;
        let weights = Weights::upload(&gpu, checkpoint)?;
        let act = Activations::new(&gpu, &config, MAX_ROWS);
        let r = u64::from(HEAD_ROWS);
        let c = config.n_embd as u64;
        let v = config.vocab_size as u64;
        let head = HeadBuffers {
            indices: gpu.buffer_zeroed("head.indices", r * 4),
            gathered: gpu.buffer_zeroed("head.gathered", r * c * 4),
            normed: gpu.buffer_zeroed("head.normed", r * c * 4),
            logits: gpu.buffer_zeroed("head.logits", r * v * 4),
            targets: gpu.buffer_zeroed("head.targets", r * 4),
            logprobs: gpu.buffer_zeroed("head.logprobs", r * 4),
            params: gpu.buffer_zeroed(
                "head.sample_params",
                r * std::mem::size_of::<SampleParams>() as u64,
            ),
            sampled: gpu.buffer_zeroed("head.sampled", r * 4),
        };
        Ok(Self {
            gpu,
            config,
            tokenizer,
            chat_template,
            path: checkpoint.path().to_path_buf(),
            kernels,
            weights,
            act,
            head,
            cache: None,
            adapter: None,
        })
    }

    /// Returns the GPU bytes used by weights, activations and the KV cache.
    pub fn gpu_bytes(&self) -> u64 {
        let cache = self.cache.as_ref().map_or(0, KvCache::gpu_bytes);
        let act = &self.act;
        let head = &self.head;
        let buffers = [
            &act.tokens,
            &act.rows,
            &act.x,
            &act.xn,
            &act.q,
            &act.k,
            &act.v,
            &act.attn,
            &act.gate,
            &act.up,
            &act.hidden,
            &head.indices,
            &head.gathered,
            &head.normed,
            &head.logits,
            &head.targets,
            &head.logprobs,
            &head.params,
            &head.sampled,
        ];
        self.weights.gpu_bytes() + cache + buffers.iter().map(|b| b.size()).sum::<u64>()
    }

    /// Allocates the KV cache for `sequences` sequences of `max_len` tokens
    /// up front, so that a batch too large for the device fails before any
    /// work starts. [`Engine::generate`] reuses a cache that is big enough.
    ///
    /// # Errors
    ///
    /// Fails when `max_len` exceeds the context length, or when the cache
    /// does not fit the device's buffers.
    pub fn reserve_kv_cache(&mut self, sequences: u32, max_len: u32) -> Result<()> {
        self.reserve(sequences, max_len)
    }

    /// Makes sure the KV cache has room for `slots` sequences of `max_len`
    /// tokens.
    fn reserve(&mut self, slots: u32, max_len: u32) -> Result<()> {
        ensure!(
            max_len as usize <= self.config.context_length.max(1),
            "sequence of {max_len} tokens exceeds the model's context length of {}",
            self.config.context_length
        );
        let fits = self
            .cache
            .as_ref()
            .is_some_and(|c| c.slots >= slots && c.max_len >= max_len);
        if !fits {
            // Drop the old cache first so both never coexist in memory.
            self.cache = None;
            self.cache = Some(KvCache::new(&self.gpu, &self.config, slots, max_len)?);
        }
        Ok(())
    }

    /// Runs `rows` through every block, leaving the residual stream in the
    /// activations.
    fn run_blocks(&self, encoder: &mut laser_gpu::Encoder, rows: &[Row]) -> Result<()> {
        let cache = self.cache.as_ref().context("KV cache not reserved")?;
        forward::encode_blocks(
            &self.gpu,
            &self.kernels,
            &self.config,
            &self.weights,
            cache,
            &self.act,
            encoder,
            rows,
            self.adapter.as_ref(),
        )
    }

    /// Applies `adapter` to every later forward pass; `None` goes back to
    /// the base model.
    pub fn set_adapter(&mut self, adapter: Option<Adapter>) {
        self.adapter = adapter;
    }

    /// The adapter applied to forward passes, if any.
    pub fn adapter(&self) -> Option<&Adapter> {
        self.adapter.as_ref()
    }

    /// Loads the PEFT LoRA adapter folder `dir` and applies it to every
    /// later forward pass.
    ///
    /// # Errors
    ///
    /// Fails when the adapter is missing, malformed or made for another
    /// model shape.
    pub fn load_adapter(&mut self, dir: &Path) -> Result<()> {
        let adapter = Adapter::load(&self.gpu, dir, &self.config, MAX_ROWS)
            .with_context(|| format!("failed to load LoRA adapter {}", dir.display()))?;
        self.adapter = Some(adapter);
        Ok(())
    }

    /// Records gather, final norm and LM head for up to [`HEAD_ROWS`] rows of
    /// the residual stream; the logits land in `head.logits` [R, V].
    fn encode_head(&self, encoder: &mut laser_gpu::Encoder, indices: &[u32]) {
        let r = indices.len() as u32;
        debug_assert!(r > 0 && r <= HEAD_ROWS);
        let c = self.config.n_embd as u32;
        let gpu = &self.gpu;
        let head = &self.head;
        gpu.queue
            .write_buffer(&head.indices, 0, bytemuck::cast_slice(indices));
        self.kernels.gather_rows.encode(
            gpu,
            encoder,
            &self.act.x,
            &head.indices,
            &head.gathered,
            r,
            c,
        );
        let eps = self.config.rms_eps;
        self.kernels.rms_norm.encode(
            gpu,
            encoder,
            &head.gathered,
            &self.weights.output_norm,
            &head.normed,
            r,
            c,
            eps,
        );
        self.kernels.matmul.encode(
            gpu,
            encoder,
            &head.normed,
            self.weights.lm_head(),
            None,
            &head.logits,
            r,
            false,
        );
    }

    fn encoder(&self, label: &str) -> laser_gpu::Encoder {
        self.gpu.encoder(label)
    }

    /// Generates a continuation of each prompt (token ids), all sequences at
    /// once. Every prompt gets its own seeded random stream, so a prompt's
    /// output does not depend on the others in the batch.
    ///
    /// # Errors
    ///
    /// Fails on an empty prompt, a sequence longer than the context, or a GPU
    /// failure.
    pub fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        sampling: &SamplingConfig,
    ) -> Result<Vec<Generation>> {
        self.generate_with(prompts, sampling, &mut |_, _, _| {})
    }

    /// Like [`Engine::generate`], calling `on_tokens(tokenizer, i, tokens)`
    /// each time sequence `i` gets a new token, with its tokens so far, so
    /// that a caller can print text as it comes. A sequence that ends on a
    /// stop string or EOS gets no call for that last step; its
    /// [`Generation`] has the final text.
    ///
    /// # Errors
    ///
    /// As [`Engine::generate`].
    pub fn generate_with(
        &mut self,
        prompts: &[Vec<u32>],
        sampling: &SamplingConfig,
        on_tokens: &mut dyn FnMut(&Tokenizer, usize, &[u32]),
    ) -> Result<Vec<Generation>> {
        let (generations, _) = self.generate_pooled(prompts, sampling, None, on_tokens)?;
        Ok(generations)
    }

    /// Like [`Engine::generate`], also returning each prompt's pooled
    /// hidden states as [`Engine::hidden_states`] does. The mean and last
    /// poolings come from the prefill that generation runs anyway, which
    /// saves a second pass over the prompts.
    ///
    /// # Errors
    ///
    /// As [`Engine::generate`].
    pub fn generate_with_contexts(
        &mut self,
        prompts: &[Vec<u32>],
        sampling: &SamplingConfig,
        pooling: Pooling,
    ) -> Result<(Vec<Generation>, Vec<Vec<f32>>)> {
        if pooling == Pooling::Embedding || sampling.max_new_tokens == 0 {
            let contexts = self.hidden_states(prompts, pooling)?;
            return Ok((self.generate(prompts, sampling)?, contexts));
        }
        let (generations, contexts) =
            self.generate_pooled(prompts, sampling, Some(pooling), &mut |_, _, _| {})?;
        Ok((generations, contexts))
    }

    /// Generates as [`Engine::generate_with`] does and, with `pooling`,
    /// pools each prompt's final hidden states during the prefill
    /// (empty without). `pooling` must not be [`Pooling::Embedding`].
    fn generate_pooled(
        &mut self,
        prompts: &[Vec<u32>],
        sampling: &SamplingConfig,
        pooling: Option<Pooling>,
        on_tokens: &mut dyn FnMut(&Tokenizer, usize, &[u32]),
    ) -> Result<(Vec<Generation>, Vec<Vec<f32>>)> {
        if prompts.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        if sampling.max_new_tokens == 0 {
            let empty = Generation {
                tokens: Vec::new(),
                text: String::new(),
                logprobs: Vec::new(),
                eos_token: None,
                eos_logprob: None,
                finish: FinishReason::Length,
            };
            return Ok((vec![empty; prompts.len()], Vec::new()));
        }
        ensure!(
            prompts.len() <= MAX_ROWS as usize,
            "{} sequences at once are more than the {MAX_ROWS} that one decode step takes; \
             generate fewer at a time",
            prompts.len()
        );
        for (i, prompt) in prompts.iter().enumerate() {
            ensure!(!prompt.is_empty(), "prompt {i} is empty");
        }
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as u32;
        let slots = prompts.len() as u32;
        // The last new token is sampled but never fed back, so it needs no
        // place in the KV cache.
        let places = u64::from(longest) + u64::from(sampling.max_new_tokens) - 1;
        let context = self.config.context_length.max(1) as u64;
        if places > context {
            ensure!(
                u64::from(longest) <= context,
                "the prompt of {longest} tokens is longer than the model's context length \
                 of {context} tokens; shorten it"
            );
            let allowed = context + 1 - u64::from(longest);
            let noun = if allowed == 1 { "token" } else { "tokens" };
            bail!(
                "the prompt of {longest} tokens and up to {} new tokens need {places} places, \
                 more than the model's context length of {context} tokens; allow {allowed} \
                 new {noun} or fewer (--max-new-tokens)",
                sampling.max_new_tokens,
            );
        }
        self.reserve(slots, places as u32)?;

        let mut state: Vec<SequenceState> = prompts
            .iter()
            .enumerate()
            .map(|(slot, prompt)| SequenceState::new(slot as u32, prompt.len() as u32, sampling))
            .collect();

        // Sequences with the same prompt (n samples of one prompt) share its
        // prefill: only the first of them runs the prompt through the
        // blocks, and the others copy its KV cache and sample their first
        // token from the same logits with their own seed.
        let mut first_with: HashMap<&[u32], usize> = HashMap::new();
        let source: Vec<usize> = prompts
            .iter()
            .enumerate()
            .map(|(slot, prompt)| *first_with.entry(prompt.as_slice()).or_insert(slot))
            .collect();

        // Prefill: every prompt token of every distinct prompt, in chunks.
        // The last prompt row of each sequence yields its first sampled
        // token.
        let all_rows: Vec<Row> = prompts
            .iter()
            .enumerate()
            .filter(|&(slot, _)| source[slot] == slot)
            .flat_map(|(slot, prompt)| {
                prompt.iter().enumerate().map(move |(pos, &token)| Row {
                    token,
                    slot: slot as u32,
                    position: pos as u32,
                })
            })
            .collect();
        let lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
        let mut sums: Vec<Vec<f32>> = match pooling {
            Some(_) => vec![vec![0.0; self.config.n_embd]; prompts.len()],
            None => Vec::new(),
        };
        for chunk in all_rows.chunks(MAX_ROWS as usize) {
            let mut encoder = self.encoder("prefill");
            self.run_blocks(&mut encoder, chunk)?;
            self.gpu.submit(encoder);
            if let Some(pooling) = pooling {
                let slots: Vec<usize> = chunk.iter().map(|row| row.slot as usize).collect();
                self.add_pooled_states(chunk, &slots, &lens, pooling, &mut sums)?;
            }
            let source = &source;
            let last_rows: Vec<(u32, u32)> = chunk
                .iter()
                .enumerate()
                .filter(|(_, row)| row.position + 1 == prompts[row.slot as usize].len() as u32)
                .flat_map(|(i, row)| {
                    let shared = row.slot as usize;
                    (0..prompts.len())
                        .filter(move |&slot| source[slot] == shared)
                        .map(move |slot| (i as u32, slot as u32))
                })
                .collect();
            let before: Vec<usize> = state.iter().map(|s| s.tokens.len()).collect();
            self.sample_rows(&last_rows, &mut state, sampling)?;
            report_new_tokens(&self.tokenizer, &state, &before, on_tokens);
        }
        self.copy_shared_prefixes(prompts, &source);

        // Decode: one row per unfinished sequence until all have stopped.
        loop {
            let rows: Vec<Row> = state
                .iter()
                .filter(|s| s.finish.is_none())
                .map(|s| Row {
                    token: *s.tokens.last().expect("a prefilled sequence has a token"),
                    slot: s.slot,
                    position: s.prompt_len + s.tokens.len() as u32 - 1,
                })
                .collect();
            if rows.is_empty() {
                break;
            }
            let mut encoder = self.encoder("decode");
            self.run_blocks(&mut encoder, &rows)?;
            self.gpu.submit(encoder);
            let picks: Vec<(u32, u32)> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| (i as u32, r.slot))
                .collect();
            let before: Vec<usize> = state.iter().map(|s| s.tokens.len()).collect();
            self.sample_rows(&picks, &mut state, sampling)?;
            report_new_tokens(&self.tokenizer, &state, &before, on_tokens);
        }

        // Sequences that shared a prefill share its pooled states too.
        if let Some(pooling) = pooling {
            for (slot, &from) in source.iter().enumerate() {
                if from != slot {
                    sums[slot] = sums[from].clone();
                }
            }
            finish_pooling(&mut sums, &lens, pooling);
        }
        let generations = state
            .into_iter()
            .map(|s| s.into_generation(&self.tokenizer))
            .collect::<Result<_>>()?;
        Ok((generations, sums))
    }

    /// Copies the prompt's KV cache entries from slot `source[slot]` to every
    /// slot whose prompt was prefilled there.
    fn copy_shared_prefixes(&self, prompts: &[Vec<u32>], source: &[usize]) {
        let Some(cache) = &self.cache else {
            return;
        };
        let row_bytes = (self.config.n_head_kv * self.config.head_dim * 4) as u64;
        let slot_bytes = u64::from(cache.max_len) * row_bytes;
        let copies: Vec<(usize, usize)> = source
            .iter()
            .enumerate()
            .filter(|&(slot, &from)| from != slot)
            .map(|(slot, &from)| (slot, from))
            .collect();
        let Some(longest) = copies.iter().map(|&(slot, _)| prompts[slot].len()).max() else {
            return;
        };
        // WebGPU forbids copies within one buffer, so each goes through a
        // scratch buffer.
        let scratch = self
            .gpu
            .buffer_zeroed("shared prompt scratch", longest as u64 * row_bytes);
        let mut encoder = self.encoder("copy shared prompts");
        for (slot, from) in copies {
            let bytes = prompts[slot].len() as u64 * row_bytes;
            for buffer in cache.keys.iter().chain(&cache.values) {
                encoder.raw().copy_buffer_to_buffer(
                    buffer,
                    from as u64 * slot_bytes,
                    &scratch,
                    0,
                    bytes,
                );
                encoder.raw().copy_buffer_to_buffer(
                    &scratch,
                    0,
                    buffer,
                    slot as u64 * slot_bytes,
                    bytes,
                );
            }
        }
        self.gpu.submit(encoder);
    }

    /// Samples one token for each (row of the residual stream, slot) pair and
    /// appends it to that slot's sequence, checking stop conditions.
    fn sample_rows(
        &mut self,
        picks: &[(u32, u32)],
        state: &mut [SequenceState],
        sampling: &SamplingConfig,
    ) -> Result<()> {
        for group in picks.chunks(HEAD_ROWS as usize) {
            let indices: Vec<u32> = group.iter().map(|&(row, _)| row).collect();
            let params: Vec<SampleParams> = group
                .iter()
                .map(|&(_, slot)| {
                    let seq = &state[slot as usize];
                    let seed = sequence_seed(sampling.seed, slot);
                    SampleParams::new(
                        sampling.temperature,
                        sampling.top_k,
                        sampling.top_p,
                        seed,
                        seq.tokens.len() as u32,
                    )
                })
                .collect();
            let r = group.len() as u32;
            let v = self.config.vocab_size as u32;
            // Padding rows of the embedding past the tokenizer's ids are
            // never drawn, since no text decodes from them.
            let drawable = v.min(self.tokenizer.vocab_size() as u32);
            let mut encoder = self.encoder("sample");
            self.encode_head(&mut encoder, &indices);
            self.gpu
                .queue
                .write_buffer(&self.head.params, 0, bytemuck::cast_slice(&params));
            self.kernels.sampler.encode_leading(
                &self.gpu,
                &mut encoder,
                &self.head.logits,
                &self.head.params,
                &self.head.sampled,
                &self.head.logprobs,
                r,
                drawable,
                v,
            );
            let bytes = u64::from(r) * 4;
            let parts = [(&self.head.sampled, bytes), (&self.head.logprobs, bytes)];
            let results = self.gpu.submit_and_read(encoder, &parts)?;
            let tokens: Vec<u32> = bytemuck::pod_collect_to_vec(&results[0]);
            let logprobs: Vec<f32> = bytemuck::pod_collect_to_vec(&results[1]);
            self.check_finite(&logprobs)?;
            for ((&(_, slot), token), logprob) in group.iter().zip(tokens).zip(logprobs) {
                let seq = &mut state[slot as usize];
                seq.push(token, logprob, &self.config, &self.tokenizer, sampling)?;
            }
        }
        Ok(())
    }

    /// Returns, for each (prompt, continuation) pair of token ids, the
    /// log-probability of every continuation token given what precedes it.
    ///
    /// # Errors
    ///
    /// Fails on an empty prompt, a sequence longer than the context, or a GPU
    /// failure.
    pub fn continuation_logprobs(
        &mut self,
        requests: &[(Vec<u32>, Vec<u32>)],
    ) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Vec<f32>> = requests
            .iter()
            .map(|(_, c)| Vec::with_capacity(c.len()))
            .collect();
        let sequences: Vec<Vec<u32>> = requests
            .iter()
            .map(|(p, c)| [p.as_slice(), c].concat())
            .collect();
        for (i, (prompt, _)) in requests.iter().enumerate() {
            ensure!(!prompt.is_empty(), "request {i} has an empty prompt");
        }
        let v = self.config.vocab_size as u32;
        self.for_each_chunk(&sequences, |engine, seq_index, chunk_rows, rows| {
            // Rows whose next token is a continuation token.
            let mut wanted: Vec<(u32, usize, u32)> = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                let seq = seq_index[i];
                let prompt_len = requests[seq].0.len() as u32;
                let next = row.position + 1;
                if next >= prompt_len && (next as usize) < sequences[seq].len() {
                    wanted.push((chunk_rows[i], seq, sequences[seq][next as usize]));
                }
            }
            for group in wanted.chunks(HEAD_ROWS as usize) {
                let indices: Vec<u32> = group.iter().map(|w| w.0).collect();
                let targets: Vec<u32> = group.iter().map(|w| w.2).collect();
                let r = group.len() as u32;
                let mut encoder = engine.encoder("score");
                engine.encode_head(&mut encoder, &indices);
                engine.gpu.queue.write_buffer(
                    &engine.head.targets,
                    0,
                    bytemuck::cast_slice(&targets),
                );
                engine.kernels.token_logprob.encode(
                    &engine.gpu,
                    &mut encoder,
                    &engine.head.logits,
                    &engine.head.targets,
                    &engine.head.logprobs,
                    r,
                    v,
                );
                engine.gpu.submit(encoder);
                let logprobs: Vec<f32> =
                    engine.gpu.read(&engine.head.logprobs, u64::from(r) * 4)?;
                engine.check_finite(&logprobs)?;
                for (w, logprob) in group.iter().zip(logprobs) {
                    out[w.1].push(logprob);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Fails when `values`, read back from the GPU, contain a NaN, naming
    /// the likely source of bad weights: the adapter when one is applied,
    /// else the model file.
    fn check_finite(&self, values: &[f32]) -> Result<()> {
        if !values.iter().any(|v| v.is_nan()) {
            return Ok(());
        }
        if self.adapter.is_some() {
            bail!(
                "the model {} produced NaN values with a LoRA adapter applied; the adapter \
                 probably holds NaN or huge weights, as a training run whose loss diverged \
                 leaves: run without it to check, and train it again with a lower learning \
                 rate",
                self.path.display()
            );
        }
        bail!(
            "the model {} produced NaN values; its weights are probably corrupt (NaN or \
             infinite values): check the model file or fetch it again{}",
            self.path.display(),
            crate::fetch::refetch_advice(&self.path)
        );
    }

    /// Returns each sequence's final hidden states (after the final norm)
    /// or, with [`Pooling::Embedding`], its token embeddings, pooled into one
    /// vector of the model's width.
    ///
    /// # Errors
    ///
    /// Fails on an empty sequence, a token outside the vocabulary or a GPU
    /// failure.
    pub fn hidden_states(
        &mut self,
        sequences: &[Vec<u32>],
        pooling: Pooling,
    ) -> Result<Vec<Vec<f32>>> {
        for (i, seq) in sequences.iter().enumerate() {
            ensure!(!seq.is_empty(), "sequence {i} is empty");
        }
        if pooling == Pooling::Embedding {
            return self.mean_embeddings(sequences);
        }
        let mut sums: Vec<Vec<f32>> = vec![vec![0.0; self.config.n_embd]; sequences.len()];
        let lens: Vec<usize> = sequences.iter().map(Vec::len).collect();
        self.for_each_chunk(sequences, |engine, seq_index, _, rows| {
            engine.add_pooled_states(rows, seq_index, &lens, pooling, &mut sums)
        })?;
        finish_pooling(&mut sums, &lens, pooling);
        Ok(sums)
    }

    /// Adds the final hidden states (after the final norm) of `rows`, which
    /// the blocks have just run, into `sums[sequence_of[i]]` for row `i`:
    /// every row for mean pooling, a sequence's last row (by `lens`) for
    /// last pooling.
    fn add_pooled_states(
        &mut self,
        rows: &[Row],
        sequence_of: &[usize],
        lens: &[usize],
        pooling: Pooling,
        sums: &mut [Vec<f32>],
    ) -> Result<()> {
        let c = self.config.n_embd;
        let m = rows.len() as u32;
        let mut encoder = self.encoder("hidden");
        self.kernels.rms_norm.encode(
            &self.gpu,
            &mut encoder,
            &self.act.x,
            &self.weights.output_norm,
            &self.act.xn,
            m,
            c as u32,
            self.config.rms_eps,
        );
        self.gpu.submit(encoder);
        let states: Vec<f32> = self.gpu.read(&self.act.xn, u64::from(m) * c as u64 * 4)?;
        self.check_finite(&states)?;
        for (i, row) in rows.iter().enumerate() {
            let seq = sequence_of[i];
            let take = pooling != Pooling::Last || row.position as usize + 1 == lens[seq];
            if take {
                let state = &states[i * c..(i + 1) * c];
                for (sum, x) in sums[seq].iter_mut().zip(state) {
                    *sum += x;
                }
            }
        }
        Ok(())
    }

    /// Returns the mean of each sequence's rows of the embedding table,
    /// dequantized on the GPU by the kernel that starts the forward pass.
    fn mean_embeddings(&mut self, sequences: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let c = self.config.n_embd;
        let vocab_size = self.config.vocab_size;
        let mut sums: Vec<Vec<f32>> = vec![vec![0.0; c]; sequences.len()];
        let rows: Vec<(usize, u32)> = sequences
            .iter()
            .enumerate()
            .flat_map(|(seq, tokens)| tokens.iter().map(move |&token| (seq, token)))
            .collect();
        for chunk in rows.chunks(MAX_ROWS as usize) {
            let tokens: Vec<u32> = chunk.iter().map(|&(_, token)| token).collect();
            if let Some(&token) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
                bail!("token id {token} is outside the vocabulary of {vocab_size}");
            }
            let m = tokens.len() as u32;
            self.gpu
                .queue
                .write_buffer(&self.act.tokens, 0, bytemuck::cast_slice(&tokens));
            let mut encoder = self.encoder("embedding");
            self.kernels.embedding.encode(
                &self.gpu,
                &mut encoder,
                &self.weights.token_embd,
                &self.act.tokens,
                &self.act.x,
                m,
            );
            self.gpu.submit(encoder);
            let embeddings: Vec<f32> = self.gpu.read(&self.act.x, u64::from(m) * c as u64 * 4)?;
            self.check_finite(&embeddings)?;
            for (&(seq, _), embedding) in chunk.iter().zip(embeddings.chunks(c)) {
                for (sum, x) in sums[seq].iter_mut().zip(embedding) {
                    *sum += x;
                }
            }
        }
        for (sum, seq) in sums.iter_mut().zip(sequences) {
            let n = seq.len() as f32;
            sum.iter_mut().for_each(|x| *x /= n);
        }
        Ok(sums)
    }

    /// Returns the full logits [T, V] predicting the token after each
    /// position of `tokens`.
    ///
    /// # Errors
    ///
    /// Fails on an empty sequence or a GPU failure.
    pub fn logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        ensure!(!tokens.is_empty(), "token sequence is empty");
        let v = self.config.vocab_size;
        let mut out = Vec::with_capacity(tokens.len());
        self.for_each_chunk(&[tokens.to_vec()], |engine, _, chunk_rows, _| {
            for group in chunk_rows.chunks(HEAD_ROWS as usize) {
                let mut encoder = engine.encoder("logits");
                engine.encode_head(&mut encoder, group);
                engine.gpu.submit(encoder);
                let logits: Vec<f32> = engine
                    .gpu
                    .read(&engine.head.logits, (group.len() * v * 4) as u64)?;
                engine.check_finite(&logits)?;
                out.extend(logits.chunks(v).map(<[f32]>::to_vec));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs `sequences` through the blocks in chunks of up to [`MAX_ROWS`]
    /// rows, at most as many sequences at once as fit the cache, calling
    /// `visit(engine, sequence index per row, row index in the chunk per row,
    /// rows)` after each chunk while its residual stream is in place.
    fn for_each_chunk(
        &mut self,
        sequences: &[Vec<u32>],
        mut visit: impl FnMut(&mut Self, &[usize], &[u32], &[Row]) -> Result<()>,
    ) -> Result<()> {
        let longest = sequences.iter().map(Vec::len).max().unwrap_or(0) as u32;
        if longest == 0 {
            return Ok(());
        }
        // Score at most this many sequences at once, so long batches do not
        // need one huge cache.
        let slots = (sequences.len() as u32).clamp(1, 64);
        self.reserve(slots, longest)?;
        for (group_index, group) in sequences.chunks(slots as usize).enumerate() {
            let base = group_index * slots as usize;
            let mut rows = Vec::new();
            let mut seq_index = Vec::new();
            for (slot, seq) in group.iter().enumerate() {
                for (pos, &token) in seq.iter().enumerate() {
                    rows.push(Row {
                        token,
                        slot: slot as u32,
                        position: pos as u32,
                    });
                    seq_index.push(base + slot);
                }
            }
            for (chunk, seqs) in rows
                .chunks(MAX_ROWS as usize)
                .zip(seq_index.chunks(MAX_ROWS as usize))
            {
                let mut encoder = self.encoder("prefill");
                self.run_blocks(&mut encoder, chunk)?;
                self.gpu.submit(encoder);
                let chunk_rows: Vec<u32> = (0..chunk.len() as u32).collect();
                visit(self, seqs, &chunk_rows, chunk)?;
            }
        }
        Ok(())
    }

    /// Times one decode step of `batch` rows after a short prefill: seconds
    /// spent recording commands on the CPU, and seconds until the GPU has
    /// executed them. For profiling only.
    ///
    /// # Errors
    ///
    /// Fails on a GPU failure.
    pub fn profile_decode_step(&mut self, batch: u32) -> Result<(f64, f64)> {
        self.reserve(batch, 64)?;
        let rows: Vec<Row> = (0..batch)
            .map(|slot| Row {
                token: 100,
                slot,
                position: 0,
            })
            .collect();
        let started = std::time::Instant::now();
        let mut encoder = self.encoder("profile");
        self.run_blocks(&mut encoder, &rows)?;
        let recorded = started.elapsed().as_secs_f64();
        self.gpu.submit(encoder);
        self.gpu.wait()?;
        Ok((recorded, started.elapsed().as_secs_f64() - recorded))
    }

    /// Tokenizes a user message with the model's chat template, ready for
    /// generation.
    ///
    /// # Errors
    ///
    /// Fails when the template does not render or the text does not
    /// tokenize.
    pub fn chat_prompt(&self, user: &str) -> Result<Vec<u32>> {
        let text = self.chat_text(user)?;
        self.tokenizer.encode(&text, true)
    }

    /// Returns whether the model shipped no chat template, so that chat
    /// prompts use ChatML.
    pub fn chat_template_is_fallback(&self) -> bool {
        self.chat_template
            .as_ref()
            .is_ok_and(ChatTemplate::is_fallback)
    }

    /// Renders a user message with the model's chat template, ending with
    /// the assistant's turn.
    ///
    /// # Errors
    ///
    /// Fails when the template does not render.
    pub fn chat_text(&self, user: &str) -> Result<String> {
        let messages = [laser_model::chat::ChatMessage::new("user", user)];
        match &self.chat_template {
            Ok(template) => template.render(&messages, true),
            Err(message) => bail!("{message}"),
        }
    }
}

/// A sequence being generated.
struct SequenceState {
    slot: u32,
    prompt_len: u32,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    eos_token: Option<u32>,
    eos_logprob: Option<f32>,
    finish: Option<FinishReason>,
    max_new_tokens: u32,
    text: Option<String>,
}

impl SequenceState {
    fn new(slot: u32, prompt_len: u32, sampling: &SamplingConfig) -> Self {
        Self {
            slot,
            prompt_len,
            tokens: Vec::new(),
            logprobs: Vec::new(),
            eos_token: None,
            eos_logprob: None,
            finish: None,
            max_new_tokens: sampling.max_new_tokens,
            text: None,
        }
    }

    /// Appends a sampled token and decides whether the sequence has stopped.
    fn push(
        &mut self,
        token: u32,
        logprob: f32,
        config: &ModelConfig,
        tokenizer: &Tokenizer,
        sampling: &SamplingConfig,
    ) -> Result<()> {
        if self.finish.is_some() {
            bail!(
                "sampled a token for finished sequence in slot {}",
                self.slot
            );
        }
        let eos = config.eos_token_ids.contains(&token) || tokenizer.eos_ids().contains(&token);
        if eos && !sampling.ignore_eos {
            self.finish = Some(FinishReason::Eos);
            self.eos_token = Some(token);
            self.eos_logprob = Some(logprob);
            return Ok(());
        }
        self.tokens.push(token);
        self.logprobs.push(logprob);
        if !sampling.stop.is_empty() {
            let text = tokenizer.decode(&self.tokens, true)?;
            if let Some(cut) = sampling
                .stop
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                // Keep the tokens that make up the text before the stop
                // string, so that `tokens`, `logprobs` and `text` agree. The
                // last one kept may also hold the stop string's first bytes.
                let mut kept_tokens = 0;
                while kept_tokens < self.tokens.len()
                    && tokenizer.decode(&self.tokens[..kept_tokens], true)?.len() < cut
                {
                    kept_tokens += 1;
                }
                self.tokens.truncate(kept_tokens);
                self.logprobs.truncate(kept_tokens);
                self.text = Some(text[..cut].to_string());
                self.finish = Some(FinishReason::Stop);
                return Ok(());
            }
        }
        if self.tokens.len() as u32 >= self.max_new_tokens {
            self.finish = Some(FinishReason::Length);
        }
        Ok(())
    }

    fn into_generation(self, tokenizer: &Tokenizer) -> Result<Generation> {
        let text = match self.text {
            Some(text) => text,
            None => tokenizer.decode(&self.tokens, true)?,
        };
        Ok(Generation {
            tokens: self.tokens,
            text,
            logprobs: self.logprobs,
            eos_token: self.eos_token,
            eos_logprob: self.eos_logprob,
            finish: self.finish.unwrap_or(FinishReason::Length),
        })
    }
}

/// Calls `on_tokens` for each unfinished sequence that has more tokens
/// than `before` records.
fn report_new_tokens(
    tokenizer: &Tokenizer,
    state: &[SequenceState],
    before: &[usize],
    on_tokens: &mut dyn FnMut(&Tokenizer, usize, &[u32]),
) {
    for (i, (sequence, &count)) in state.iter().zip(before).enumerate() {
        if sequence.finish != Some(FinishReason::Stop) && sequence.tokens.len() > count {
            on_tokens(tokenizer, i, &sequence.tokens);
        }
    }
}

/// Warns when the model's vocabulary and the tokenizer's differ in size.
/// Padded embeddings (more rows than ids) are common, and sampling skips
/// their padding ids. A tokenizer with more ids than the model can produce
/// ids that the model cannot read.
fn warn_on_vocab_mismatch(model_vocab: usize, tokenizer_vocab: usize) {
    if model_vocab > tokenizer_vocab {
        tracing::debug!(
            model_vocab,
            tokenizer_vocab,
            "the embedding has padding rows past the tokenizer's ids; they are never sampled"
        );
    } else if model_vocab < tokenizer_vocab {
        eprintln!(
            "warning: the tokenizer has {tokenizer_vocab} ids but the model's vocabulary has \
             {model_vocab}, so text that encodes to an id from {model_vocab} on will be rejected"
        );
    }
}

/// Derives slot `slot`'s random stream from the run's seed (SplitMix64).
fn sequence_seed(seed: u64, slot: u32) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(u64::from(slot) + 1));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Divides the sums of mean pooling by each sequence's length (`lens`);
/// the other poolings need nothing more.
fn finish_pooling(sums: &mut [Vec<f32>], lens: &[usize], pooling: Pooling) {
    if pooling == Pooling::Mean {
        for (sum, &len) in sums.iter_mut().zip(lens) {
            let n = len as f32;
            sum.iter_mut().for_each(|x| *x /= n);
        }
    }
}
