//! Preference pairs as token ids, and their packing into padded training
//! batches: chosen sequences first, then rejected ones, grouped by length
//! so that little padding is computed.

use anyhow::Result;

use super::model::SequenceBatch;

/// One preference pair as token ids. The prompt already carries the chat
/// template; the responses end with the end-of-turn token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedPair {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

impl TokenizedPair {
    /// Returns `prompt + response` cut to `max_len` tokens, and the index of
    /// the first response token. Responses are kept whole where they fit:
    /// the prompt keeps its last tokens, as many as the longer response
    /// leaves but at least a quarter of `max_len`, and the response is cut
    /// at its end. Both responses of a pair see the same prompt tokens, and
    /// each part keeps at least one token.
    pub fn sequence(&self, response: &[u32], max_len: usize) -> (Vec<u32>, usize) {
        let longer = self.chosen.len().max(self.rejected.len());
        let budget = max_len.saturating_sub(longer).max(max_len / 4);
        let keep_prompt = self
            .prompt
            .len()
            .min(budget)
            .min(max_len.saturating_sub(1))
            .max(1);
        let prompt = &self.prompt[self.prompt.len() - keep_prompt..];
        let keep_response = response
            .len()
            .min(max_len.saturating_sub(keep_prompt).max(1));
        let mut tokens = prompt.to_vec();
        tokens.extend_from_slice(&response[..keep_response]);
        (tokens, keep_prompt)
    }

    /// Returns the length of the longer sequence, in tokens, before cutting.
    pub fn len(&self) -> usize {
        self.prompt.len() + self.chosen.len().max(self.rejected.len())
    }

    /// Returns whether both responses are empty.
    pub fn is_empty(&self) -> bool {
        self.chosen.is_empty() && self.rejected.is_empty()
    }
}

/// Splits `indices` (into `pairs`) into micro-batches of up to
/// `micro_batch` pairs, sorted by length (ties by index) so each
/// micro-batch pads little. The grouping depends only on its inputs.
pub fn micro_batches(
    pairs: &[TokenizedPair],
    indices: &[usize],
    micro_batch: usize,
) -> Vec<Vec<usize>> {
    let mut sorted = indices.to_vec();
    sorted.sort_by_key(|&i| (pairs[i].len(), i));
    sorted
        .chunks(micro_batch.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Builds the batch of `group`'s pairs: sequence `j` is pair `group[j]`'s
/// chosen response, sequence `B/2 + j` its rejected one.
///
/// # Errors
///
/// Fails when a response is empty.
pub fn pair_batch(
    pairs: &[TokenizedPair],
    group: &[usize],
    max_len: usize,
) -> Result<SequenceBatch> {
    let mut sequences = Vec::with_capacity(2 * group.len());
    for &i in group {
        sequences.push(pairs[i].sequence(&pairs[i].chosen, max_len));
    }
    for &i in group {
        sequences.push(pairs[i].sequence(&pairs[i].rejected, max_len));
    }
    let views: Vec<(&[u32], usize)> = sequences
        .iter()
        .map(|(t, first)| (t.as_slice(), *first))
        .collect();
    SequenceBatch::new(&views)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_cuts_response_end() {
        let pair = TokenizedPair {
            prompt: vec![1, 2, 3],
            chosen: vec![4, 5, 6, 7],
            rejected: vec![8],
        };
        // Room for everything: nothing is cut.
        assert_eq!(
            pair.sequence(&pair.chosen, 16),
            (vec![1, 2, 3, 4, 5, 6, 7], 3)
        );
        // The prompt gives way to the longer response, for both responses.
        assert_eq!(pair.sequence(&pair.chosen, 6), (vec![2, 3, 4, 5, 6, 7], 2));
        assert_eq!(pair.sequence(&pair.rejected, 6), (vec![2, 3, 8], 2));
        // The prompt keeps a quarter of the limit; the response is cut.
        assert_eq!(pair.sequence(&pair.chosen, 4), (vec![3, 4, 5, 6], 1));
        assert_eq!(pair.sequence(&pair.chosen, 2), (vec![3, 4], 1));
    }

    #[test]
    fn pair_batch_masks_prompt_and_padding() {
        let pairs = vec![TokenizedPair {
            prompt: vec![1, 2],
            chosen: vec![3, 4, 5],
            rejected: vec![6],
        }];
        let batch = pair_batch(&pairs, &[0], 64).unwrap();
        assert_eq!(batch.batch, 2);
        assert_eq!(batch.seq_len, 5);
        assert_eq!(batch.tokens, vec![1, 2, 3, 4, 5, 1, 2, 6, 0, 0]);
        assert_eq!(batch.targets, vec![0, 3, 4, 5, 0, 0, 6, 0, 0, 0]);
        let mask: Vec<bool> = [0, 1, 1, 1, 0, 0, 1, 0, 0, 0]
            .iter()
            .map(|&m| m == 1)
            .collect();
        assert_eq!(batch.mask, mask);
        assert_eq!(batch.counted(0), 3);
        assert_eq!(batch.counted(1), 1);
    }

    #[test]
    fn micro_batches_group_by_length() {
        let pair = |n: usize| TokenizedPair {
            prompt: vec![1],
            chosen: vec![2; n],
            rejected: vec![3],
        };
        let pairs = vec![pair(9), pair(1), pair(5), pair(2)];
        assert_eq!(
            micro_batches(&pairs, &[0, 1, 2, 3], 2),
            vec![vec![1, 3], vec![2, 0]]
        );
    }
}
