//! Fuzzing the worker protocol's reader: any byte stream gives frames or an
//! error, never a panic, and memory stays linear in what was received.

use std::io::{self, Read};
use std::path::Path;

use polyarch_fuzzing::{Counting, Fuzz};
use polyarch_remote::wire::{read_blob_data, read_frame, Frame, Msg};

#[global_allocator]
static A: Counting = Counting;

/// Reads frames as a session does, blob data included, until the end or
/// the first error.
fn read_session(mut r: &[u8]) -> io::Result<usize> {
    let mut frames = 0;
    while let Some(frame) = read_frame(&mut r)? {
        frames += 1;
        if let Frame::Msg(Msg::Blob { size, .. }) = frame {
            read_blob_data(&mut r, size, &mut io::sink())?;
        }
    }
    Ok(frames)
}

#[test]
fn fuzz_wire() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz/wire");
    let report = Fuzz::new("wire", corpus)
        .with_dict(&[
            "M",
            "D",
            "\0\0\0",
            "\u{4}\0\0",
            "\"type\":",
            "\"blob\"",
            "\"size\":",
            "\"digest\":",
            "sha256:",
            "null",
            "[",
            "{",
            "}",
            "]",
            "18446744073709551615",
            "\"hello\"",
            "\"build\"",
            "\"built\"",
            "\"context\"",
        ])
        .run(|input| {
            let _ = read_session(input);
        });
    eprintln!("wire: {report:?}");
}

#[test]
fn a_short_stream_never_allocates_its_announced_length() {
    // Five bytes announcing a 64 MiB frame: an error, after reading what
    // arrived, not a 64 MiB buffer.
    let mut r: &[u8] = &[b'D', 0x04, 0, 0, 0, 1, 2, 3];
    let e = read_frame(&mut r).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    let mut r = io::repeat(7).take(3 << 20);
    let mut input = vec![b'D', 0, 0x30, 0, 0];
    r.read_to_end(&mut input).unwrap();
    let Some(Frame::Data(d)) = read_frame(&mut &input[..]).unwrap() else { panic!("a data frame") };
    assert_eq!(d.len(), 0x30_0000);
}
