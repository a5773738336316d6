//! Fuzzing the worker protocol's reader (the target is in `fuzz_targets/`):
//! any byte stream gives frames or an error, never a panic, and memory
//! stays linear in what was received.

mod fuzz_targets;

use std::io::{self, Read};
use std::path::Path;

use fuzz_targets as t;
use polyarch_fuzzing::{Counting, Fuzz};
use polyarch_remote::wire::{read_frame, Frame};

#[global_allocator]
static A: Counting = Counting;

#[test]
fn fuzz_wire() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz/wire");
    eprintln!("wire: {:?}", Fuzz::new("wire", corpus).with_dict(t::WIRE_DICT).run(t::wire));
}

#[test]
fn frames_are_read_whole_or_refused() {
    // Five bytes announcing a 64 MiB frame and three bytes of it: the
    // stream ended inside the frame.
    let mut r: &[u8] = &[b'D', 0x04, 0, 0, 0, 1, 2, 3];
    let e = read_frame(&mut r).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    let mut input = vec![b'D', 0, 0x30, 0, 0];
    io::repeat(7).take(3 << 20).read_to_end(&mut input).unwrap();
    let Some(Frame::Data(d)) = read_frame(&mut &input[..]).unwrap() else { panic!("a data frame") };
    assert_eq!(d.len(), 0x30_0000);
    assert_eq!(t::read_session(&input[..]).unwrap_err().kind(), io::ErrorKind::InvalidData, "data outside a blob");
}
