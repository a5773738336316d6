//! A seeded random source and the mutations applied to corpus inputs.

/// splitmix64: small, fast, and the same sequence for the same seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Bytes that often change how a parser goes.
const INTERESTING: &[u8] =
    b"\0\x01\x7f\x80\xff\n\r\t \\$`'\"{}[]()<>:;,.=@#/*?!-+~%&|\x1b\xc3\xa9\xe2\x80\xa8\xf0\x9f\x92\xa9";

/// Derives a new input from `base`: one to eight mutations among bit
/// flips, byte changes, inserts, deletes, repeats, dictionary tokens and
/// splices with `others`, kept at most `max_len` bytes long.
pub fn mutate(rng: &mut Rng, base: &[u8], others: &[Vec<u8>], dict: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(8) {
        mutate_once(rng, &mut v, others, dict);
        v.truncate(max_len);
    }
    v
}

fn mutate_once(rng: &mut Rng, v: &mut Vec<u8>, others: &[Vec<u8>], dict: &[Vec<u8>]) {
    let at = rng.below(v.len() + 1);
    match rng.below(10) {
        0 if !v.is_empty() => {
            let i = rng.below(v.len());
            v[i] ^= 1 << rng.below(8);
        }
        1 if !v.is_empty() => {
            let i = rng.below(v.len());
            v[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 => {
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            v.splice(at..at, bytes);
        }
        3 if !v.is_empty() => {
            let from = rng.below(v.len());
            let len = 1 + rng.below((v.len() - from).min(64));
            v.drain(from..from + len);
        }
        4 if !v.is_empty() => {
            // Repeat a piece: nesting and long runs find quadratic paths.
            let from = rng.below(v.len());
            let len = 1 + rng.below((v.len() - from).min(32));
            let piece = v[from..from + len].to_vec();
            let most = if rng.one_in(8) { 512 } else { 8 };
            let times = 1 + rng.below(most);
            let rep: Vec<u8> = piece.iter().copied().cycle().take(len * times).collect();
            v.splice(from..from, rep);
        }
        5 | 6 if !dict.is_empty() => {
            let token = dict[rng.below(dict.len())].clone();
            v.splice(at..at, token);
        }
        7 if !others.is_empty() => {
            let other = &others[rng.below(others.len())];
            let from = rng.below(other.len() + 1);
            v.truncate(at);
            v.extend_from_slice(&other[from..]);
        }
        8 => v.truncate(at),
        _ => {
            let i = rng.below(INTERESTING.len());
            v.insert(at, INTERESTING[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_inputs_and_bounded_length() {
        let others = vec![b"FROM busybox\nRUN echo hi\n".to_vec()];
        let dict = vec![b"${".to_vec()];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..200).map(|_| mutate(&mut rng, &others[0], &others, &dict, 64)).collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        assert!(a.iter().all(|v| v.len() <= 64));
        assert!(a.iter().any(|v| v.windows(2).any(|w| w == b"${")), "dictionary tokens are used");
    }
}
