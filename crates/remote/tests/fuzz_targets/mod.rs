//! The fuzz target of the worker protocol, shared by `tests/fuzz.rs`
//! (bounded, under `cargo test`) and the cargo-fuzz targets under `fuzz/`.

use std::io;

use polyarch_remote::wire::{read_blob_data, read_frame, Frame, Msg};

/// Tokens for frames and messages.
#[rustfmt::skip]
pub const WIRE_DICT: &[&str] = &[
    "M", "D", "\0\0\0", "\u{4}\0\0", "\"type\":", "\"blob\"", "\"size\":", "\"digest\":", "sha256:", "null", "[", "{",
    "}", "]", "18446744073709551615", "\"hello\"", "\"build\"", "\"built\"", "\"context\"",
];

/// Reads frames as a session does, blob data included, until the end or
/// the first error; data outside a blob is an error, as in a session.
pub fn read_session(mut r: &[u8]) -> io::Result<usize> {
    let mut frames = 0;
    while let Some(frame) = read_frame(&mut r)? {
        frames += 1;
        match frame {
            Frame::Msg(Msg::Blob { size, .. }) => read_blob_data(&mut r, size, &mut io::sink())?,
            Frame::Msg(_) => {}
            Frame::Data(_) => return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected blob data")),
        }
    }
    Ok(frames)
}

/// Any byte stream: frames or an error.
pub fn wire(input: &[u8]) {
    let _ = read_session(input);
}
