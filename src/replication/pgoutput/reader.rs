//! The bounds-checked cursor the pgoutput decoder reads every field through.
use bytes::Bytes;

use super::DecodeError;

/// A cursor over one message; every read is bounds-checked.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a Bytes,
    pub(super) pos: usize,
}

impl Reader<'_> {
    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(super) fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.buf.len());
        let bytes = end.and_then(|end| self.buf.get(self.pos..end));
        let bytes = bytes.ok_or_else(|| self.truncated(N))?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        self.pos += N;
        Ok(out)
    }

    pub(super) fn truncated(&self, needed: usize) -> DecodeError {
        DecodeError::Truncated {
            offset: self.pos,
            needed,
            available: self.remaining(),
        }
    }

    pub(super) fn unexpected(&self, expected: &'static str) -> DecodeError {
        DecodeError::Unexpected {
            offset: self.pos,
            expected,
            found: self.buf.get(self.pos).copied().unwrap_or(0),
        }
    }

    pub(super) fn peek(&self) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.truncated(1))
    }

    pub(super) fn expect(&mut self, tag: u8, expected: &'static str) -> Result<(), DecodeError> {
        if self.peek()? != tag {
            return Err(self.unexpected(expected));
        }
        self.pos += 1;
        Ok(())
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    pub(super) fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    pub(super) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    /// An Int32 length that must not be negative.
    pub(super) fn length(&mut self) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let len = self.i32()?;
        usize::try_from(len).map_err(|_| DecodeError::NegativeLength { offset, len })
    }

    /// `len` bytes as a zero-copy slice of the input.
    pub(super) fn bytes(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if len > self.remaining() {
            return Err(self.truncated(len));
        }
        let out = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    /// A NUL-terminated UTF-8 string.
    pub(super) fn string(&mut self) -> Result<String, DecodeError> {
        let offset = self.pos;
        let rest = self.buf.get(offset..).unwrap_or_default();
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::MissingNul { offset })?;
        let text = std::str::from_utf8(&rest[..nul])
            .map_err(|_| DecodeError::InvalidUtf8 { offset })?
            .to_owned();
        self.pos = offset + nul + 1;
        Ok(text)
    }

    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                offset: self.pos,
                count,
            }),
        }
    }
}
