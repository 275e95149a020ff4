//! `laser-host generate`: samples continuations of one prompt.

use anyhow::{Result, ensure};

use crate::cli::GenerateArgs;
use crate::engine::{FinishReason, MAX_ROWS, SamplingConfig};

pub(crate) fn run(args: &GenerateArgs, verbose: bool) -> Result<()> {
    ensure!(
        (1..=MAX_ROWS).contains(&args.num_samples),
        "-n must be between 1 and {MAX_ROWS}, the sequences one decode step takes, got {}",
        args.num_samples
    );
    ensure!(
        args.temperature.is_finite() && args.temperature >= 0.0,
        "--temperature must be a finite number >= 0, got {}",
        args.temperature
    );
    ensure!(
        args.top_p > 0.0 && args.top_p <= 1.0,
        "--top-p must be in (0, 1], got {}",
        args.top_p
    );
    ensure!(!args.prompt.is_empty(), "--prompt is empty");
    ensure!(
        args.stop.iter().all(|stop| !stop.is_empty()),
        "--stop is an empty string, which every text contains; give a non-empty string"
    );
    if let Some(dir) = &args.adapter {
        super::eval::reject_run_folder(dir)?;
    }
    let mut engine = super::load_engine(&args.model, verbose)?;
    if let Some(dir) = &args.adapter {
        engine.load_adapter(dir)?;
    }
    let prompt = if args.chat {
        if engine.chat_template_is_fallback() {
            eprintln!(
                "note: the model has no chat template, so --chat wraps the prompt in ChatML \
                 (<|im_start|>user ... <|im_end|>)"
            );
        }
        engine.chat_prompt(&args.prompt)?
    } else {
        engine.tokenizer.encode(&args.prompt, false)?
    };
    ensure!(!prompt.is_empty(), "the prompt has no tokens");
    let sampling = SamplingConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        max_new_tokens: args.max_new_tokens,
        stop: args.stop.clone(),
        ignore_eos: false,
    };
    let prompts = vec![prompt; args.num_samples as usize];
    let started = std::time::Instant::now();
    // One plain-text sample is printed as it is generated.
    let mut stream = (args.num_samples == 1 && !args.json).then(|| Stream::new(&args.stop));
    let generations = engine.generate_with(&prompts, &sampling, &mut |tokenizer, _, tokens| {
        if let Some(stream) = &mut stream
            && let Ok(text) = tokenizer.decode(tokens, true)
        {
            stream.show(&text);
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let new_tokens: usize = generations.iter().map(|g| g.tokens.len()).sum();
    for (i, generation) in generations.iter().enumerate() {
        if args.json {
            println!("{}", serde_json::to_string(generation)?);
        } else {
            if args.num_samples > 1 {
                println!("--- sample {} ---", i + 1);
            }
            match &mut stream {
                Some(stream) => stream.finish(&generation.text),
                None => println!("{}", generation.text),
            }
            if generation.text.is_empty() {
                eprintln!("{}", empty_sample_note(generation.finish, args.chat));
            }
        }
    }
    if verbose {
        eprintln!(
            "{new_tokens} tokens in {seconds:.2} s ({:.1} tokens/s)",
            new_tokens as f64 / seconds
        );
    }
    Ok(())
}

/// Prints a sample's text while it is generated. Each step decodes the
/// tokens so far and prints what is new, less a trailing partial
/// character and a tail that may be the start of a stop string, which the
/// final text would not have.
struct Stream {
    stops: Vec<String>,
    printed: String,
}

impl Stream {
    fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.to_vec(),
            printed: String::new(),
        }
    }

    /// Prints the part of `text`, the decoded tokens so far, that is new
    /// and final.
    fn show(&mut self, text: &str) {
        let ready = ready_text(text, &self.stops);
        if let Some(new) = ready.strip_prefix(self.printed.as_str())
            && !new.is_empty()
        {
            print!("{new}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
            self.printed = ready.to_owned();
        }
    }

    /// Prints the rest of the sample's final text and ends its line.
    fn finish(&mut self, text: &str) {
        match text.strip_prefix(self.printed.as_str()) {
            Some(rest) => println!("{rest}"),
            // The final text differs from what was shown; print it whole
            // on a line of its own.
            None => println!("\n{text}"),
        }
    }
}

/// Returns the start of `text` that later tokens cannot change. It ends
/// before any stop string and before a tail that a stop string starts
/// with. It also leaves out a trailing U+FFFD: a character whose bytes
/// span tokens decodes to that until its last byte comes.
fn ready_text<'a>(text: &'a str, stops: &[String]) -> &'a str {
    let mut end = stops
        .iter()
        .filter_map(|stop| text.find(stop.as_str()))
        .min()
        .unwrap_or(text.len());
    for stop in stops {
        let partial = (1..stop.len())
            .rev()
            .filter(|&k| stop.is_char_boundary(k))
            .find(|&k| text[..end].ends_with(&stop[..k]));
        if let Some(k) = partial {
            end -= k;
        }
    }
    text[..end].trim_end_matches('\u{FFFD}')
}

/// Returns the line printed to stderr for an empty sample, which would
/// otherwise leave a blank line with no explanation.
fn empty_sample_note(finish: FinishReason, chat: bool) -> String {
    let reason = match finish {
        FinishReason::Eos => "the model drew its end-of-sequence token first",
        FinishReason::Stop => "a stop string came before any other text",
        FinishReason::Length => "its tokens decode to no text",
    };
    let note = format!("note: the sample is empty because {reason}.");
    if finish == FinishReason::Eos && !chat {
        format!("{note} An instruct model may need --chat.")
    } else {
        note
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_text_withholds_unstable_tail() {
        let stops = vec!["STOP".to_owned()];
        assert_eq!(ready_text("hello", &stops), "hello");
        assert_eq!(ready_text("hello ST", &stops), "hello ");
        assert_eq!(ready_text("hello STOP and on", &stops), "hello ");
        assert_eq!(ready_text("caf\u{FFFD}", &[]), "caf");
        assert_eq!(ready_text("S", &stops), "");
        // A multi-byte stop string is held back whole characters at a time.
        let stops = vec!["éé".to_owned()];
        assert_eq!(ready_text("abé", &stops), "ab");
    }

    #[test]
    fn empty_sample_note_names_reason() {
        let eos = empty_sample_note(FinishReason::Eos, false);
        assert!(eos.contains("end-of-sequence"), "{eos}");
        assert!(eos.ends_with("may need --chat."), "{eos}");
        let eos_chat = empty_sample_note(FinishReason::Eos, true);
        assert!(!eos_chat.contains("--chat"), "{eos_chat}");
        let stop = empty_sample_note(FinishReason::Stop, false);
        assert!(stop.contains("stop string"), "{stop}");
    }
}
