//! A stereo call recording: caller on the left, agent on the right, as a 16-bit PCM WAV.
//!
//! [`WavRecorder`] is a [`RecordingSink`]: the driver hands it each 20 ms tick's caller and agent
//! frames (what was actually heard), it resamples both to one rate with the codecs'
//! [`Resampler`] and writes them interleaved through a host-given `Write + Seek`. A side with no
//! frame on a tick is silence, so the recording is exactly as long as the ticks it saw. The RIFF
//! header is written first with zero sizes and patched when the call ends.
//!
//! Everything is allocated in [`WavRecorder::new`]: a resampler per input rate per side and one
//! output buffer, so a tick allocates nothing (the writer itself may; give it a buffered or
//! in-memory destination, since the driver calls the sink on the media clock).

use std::io::{self, Seek, SeekFrom, Write};
use std::time::Duration;

use tokio::sync::oneshot;
use voxline_codecs::{AudioFrame, CodecError, Resampler, SampleRate, FRAME_MS};

use crate::driver::RecordingSink;

/// The rate recordings are written at unless told otherwise.
pub const DEFAULT_RECORDING_RATE: SampleRate = SampleRate::Hz16000;

/// Bytes in the canonical PCM WAV header this recorder writes.
pub const WAV_HEADER_BYTES: u64 = 44;

const CHANNELS: u16 = 2;
const BYTES_PER_SAMPLE: u16 = 2;

/// Why a recording failed; the call itself is never affected.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// Writing, seeking or flushing the host's writer failed; nothing was written after it.
    #[error("writing the call recording failed: {0}")]
    Io(#[from] io::Error),
    /// A resampler for the recording could not be set up.
    #[error("setting up the recording resampler failed: {0}")]
    Resampler(#[from] CodecError),
    /// The data would not fit a WAV file's 32-bit sizes (about 18 hours at 16 kHz stereo).
    #[error("the call recording exceeds the 4 GiB WAV limit; frames after it were dropped")]
    TooLong,
    /// The recorder was dropped without reporting (the call task panicked or was aborted).
    #[error("the recorder went away before finishing the recording")]
    Abandoned,
}

/// A completed recording: the writer back, and what is in it.
#[derive(Debug)]
pub struct FinishedRecording<W> {
    /// The host's writer, positioned at the end of the WAV data.
    pub writer: W,
    /// The WAV's sample rate.
    pub sample_rate: SampleRate,
    /// 20 ms ticks recorded.
    pub frames: u64,
    /// Bytes of sample data (after the 44-byte header).
    pub data_bytes: u64,
}

impl<W> FinishedRecording<W> {
    /// Length of the recording.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.frames * u64::from(FRAME_MS))
    }
}

/// Receives the recording once the call has ended.
#[derive(Debug)]
pub struct RecordingHandle<W> {
    rx: oneshot::Receiver<Result<FinishedRecording<W>, RecordingError>>,
}

impl<W> RecordingHandle<W> {
    /// Waits for the recording to be completed (at the end of the call).
    pub async fn finished(self) -> Result<FinishedRecording<W>, RecordingError> {
        self.rx.await.unwrap_or(Err(RecordingError::Abandoned))
    }

    /// The recording if it has been completed, without waiting.
    pub fn try_finished(&mut self) -> Option<Result<FinishedRecording<W>, RecordingError>> {
        match self.rx.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(RecordingError::Abandoned)),
        }
    }
}

/// One channel: a resampler per input rate and the frame it resamples into.
struct Side {
    resamplers: [Resampler; 4],
    out: AudioFrame,
    /// Rate of the last frame that carried audio, while the filter still holds its tail.
    tail: Option<SampleRate>,
}

fn rate_index(rate: SampleRate) -> usize {
    match rate {
        SampleRate::Hz8000 => 0,
        SampleRate::Hz16000 => 1,
        SampleRate::Hz24000 => 2,
        SampleRate::Hz48000 => 3,
    }
}

impl Side {
    fn new(to: SampleRate) -> Result<Self, CodecError> {
        Ok(Self {
            resamplers: [
                Resampler::new(SampleRate::Hz8000, to)?,
                Resampler::new(SampleRate::Hz16000, to)?,
                Resampler::new(SampleRate::Hz24000, to)?,
                Resampler::new(SampleRate::Hz48000, to)?,
            ],
            out: AudioFrame::silent(to),
            tail: None,
        })
    }

    /// This tick's samples at the recording rate: the frame resampled, or silence. The first
    /// silent tick after audio runs silence through the filter so the audio's tail is kept.
    fn next(&mut self, frame: Option<&AudioFrame>, to: SampleRate) -> Result<&[i16], CodecError> {
        match frame {
            Some(frame) => {
                let rate = frame.rate();
                self.resamplers[rate_index(rate)].process_into(frame, &mut self.out)?;
                self.tail = Some(rate);
            }
            None => match self.tail.take() {
                Some(rate) => {
                    let silence = AudioFrame::silent(rate);
                    self.resamplers[rate_index(rate)].process_into(&silence, &mut self.out)?;
                }
                None => self.out = AudioFrame::silent(to),
            },
        }
        Ok(self.out.samples())
    }
}

/// Everything the recorder owns while recording.
struct Recording<W> {
    writer: W,
    start: u64,
    rate: SampleRate,
    caller: Side,
    agent: Side,
    interleaved: Vec<u8>,
    frames: u64,
    data_bytes: u64,
    error: Option<RecordingError>,
}

impl<W: Write + Seek> Recording<W> {
    fn tick(&mut self, caller: Option<&AudioFrame>, agent: Option<&AudioFrame>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write_tick(caller, agent) {
            self.error = Some(e);
        }
    }

    fn write_tick(
        &mut self,
        caller: Option<&AudioFrame>,
        agent: Option<&AudioFrame>,
    ) -> Result<(), RecordingError> {
        let bytes = self.interleaved.capacity() as u64;
        if WAV_HEADER_BYTES - 8 + self.data_bytes + bytes > u64::from(u32::MAX) {
            return Err(RecordingError::TooLong);
        }
        let left = self.caller.next(caller, self.rate)?;
        self.interleaved.clear();
        for &l in left {
            self.interleaved.extend_from_slice(&l.to_le_bytes());
            // Room for the right channel, filled below.
            self.interleaved.extend_from_slice(&[0, 0]);
        }
        let right = self.agent.next(agent, self.rate)?;
        for (slot, &r) in self.interleaved.chunks_exact_mut(4).zip(right) {
            slot[2..].copy_from_slice(&r.to_le_bytes());
        }
        self.writer.write_all(&self.interleaved)?;
        self.frames += 1;
        self.data_bytes += self.interleaved.len() as u64;
        Ok(())
    }

    /// Patches the header sizes and leaves the writer after the data.
    fn complete(mut self) -> Result<FinishedRecording<W>, RecordingError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        // Checked on every tick, so these fit.
        let data = u32::try_from(self.data_bytes).map_err(|_| RecordingError::TooLong)?;
        let riff = u32::try_from(WAV_HEADER_BYTES - 8 + self.data_bytes)
            .map_err(|_| RecordingError::TooLong)?;
        self.writer.seek(SeekFrom::Start(self.start + 4))?;
        self.writer.write_all(&riff.to_le_bytes())?;
        self.writer.seek(SeekFrom::Start(self.start + 40))?;
        self.writer.write_all(&data.to_le_bytes())?;
        self.writer.seek(SeekFrom::Start(
            self.start + WAV_HEADER_BYTES + self.data_bytes,
        ))?;
        self.writer.flush()?;
        Ok(FinishedRecording {
            writer: self.writer,
            sample_rate: self.rate,
            frames: self.frames,
            data_bytes: self.data_bytes,
        })
    }
}

/// The 44-byte header of a 16-bit PCM stereo WAV with the given sizes.
fn wav_header(rate: SampleRate, data_bytes: u32) -> [u8; WAV_HEADER_BYTES as usize] {
    let block_align = CHANNELS * BYTES_PER_SAMPLE;
    let byte_rate = rate.hz() * u32::from(block_align);
    let mut h = [0u8; WAV_HEADER_BYTES as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36u32.saturating_add(data_bytes)).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&CHANNELS.to_le_bytes());
    h[24..28].copy_from_slice(&rate.hz().to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&(BYTES_PER_SAMPLE * 8).to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

/// Records a call as a stereo WAV (caller left, agent right) through a host-given writer.
///
/// Hand it to [`CallTask::with_recording`](crate::driver::CallTask::with_recording) and keep the
/// [`RecordingHandle`]; when the call ends the header is patched and the handle receives the
/// writer back. A write error stops the recording (never the call) and is reported there.
pub struct WavRecorder<W: Write + Seek + Send + 'static> {
    recording: Option<Recording<W>>,
    done: Option<oneshot::Sender<Result<FinishedRecording<W>, RecordingError>>>,
}

impl<W: Write + Seek + Send + 'static> std::fmt::Debug for WavRecorder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavRecorder")
            .field("rate", &self.recording.as_ref().map(|r| r.rate))
            .field("frames", &self.recording.as_ref().map(|r| r.frames))
            .finish()
    }
}

impl<W: Write + Seek + Send + 'static> WavRecorder<W> {
    /// A recorder at [`DEFAULT_RECORDING_RATE`] writing from the writer's current position.
    pub fn new(writer: W) -> Result<(Self, RecordingHandle<W>), RecordingError> {
        Self::with_rate(writer, DEFAULT_RECORDING_RATE)
    }

    /// A recorder at `rate`: writes the provisional header and sets up every resampler.
    pub fn with_rate(
        mut writer: W,
        rate: SampleRate,
    ) -> Result<(Self, RecordingHandle<W>), RecordingError> {
        let start = writer.stream_position()?;
        writer.write_all(&wav_header(rate, 0))?;
        let recording = Recording {
            writer,
            start,
            rate,
            caller: Side::new(rate)?,
            agent: Side::new(rate)?,
            interleaved: Vec::with_capacity(
                rate.frame_samples() * usize::from(CHANNELS * BYTES_PER_SAMPLE),
            ),
            frames: 0,
            data_bytes: 0,
            error: None,
        };
        let (tx, rx) = oneshot::channel();
        Ok((
            Self {
                recording: Some(recording),
                done: Some(tx),
            },
            RecordingHandle { rx },
        ))
    }

    fn complete(&mut self) {
        let Some(recording) = self.recording.take() else {
            return;
        };
        let result = recording.complete();
        if let Some(tx) = self.done.take() {
            // A host that dropped its handle does not want the result.
            let _ = tx.send(result);
        }
    }
}

impl<W: Write + Seek + Send + 'static> RecordingSink for WavRecorder<W> {
    fn on_frames(&mut self, caller: Option<&AudioFrame>, agent: Option<&AudioFrame>) {
        if let Some(recording) = self.recording.as_mut() {
            recording.tick(caller, agent);
        }
    }

    fn finish(&mut self) {
        self.complete();
    }
}

impl<W: Write + Seek + Send + 'static> Drop for WavRecorder<W> {
    /// Completes the file even when the call task ends without calling `finish`.
    fn drop(&mut self) {
        self.complete();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn tone(rate: SampleRate, amplitude: f32) -> AudioFrame {
        let mut frame = AudioFrame::silent(rate);
        let hz = rate.hz() as f32;
        for (i, s) in frame.samples_mut().iter_mut().enumerate() {
            *s = (amplitude * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / hz).sin()) as i16;
        }
        frame
    }

    #[test]
    fn header_and_sizes_are_patched() {
        let (mut rec, mut handle) = WavRecorder::new(Cursor::new(Vec::new())).expect("set up");
        let caller = tone(SampleRate::Hz8000, 8000.0);
        let agent = tone(SampleRate::Hz24000, 8000.0);
        for i in 0..10 {
            rec.on_frames((i % 2 == 0).then_some(&caller), Some(&agent));
        }
        assert!(handle.try_finished().is_none());
        rec.finish();
        let done = handle.try_finished().expect("completed").expect("ok");
        assert_eq!(done.frames, 10);
        assert_eq!(done.duration(), Duration::from_millis(200));
        assert_eq!(done.data_bytes, 10 * 320 * 4);
        let bytes = done.writer.into_inner();
        assert_eq!(bytes.len() as u64, WAV_HEADER_BYTES + done.data_bytes);
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            36 + 12_800
        );
        assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 2);
        assert_eq!(
            u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]),
            16_000
        );
        assert_eq!(
            u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]),
            12_800
        );
    }

    #[test]
    fn drop_completes_and_writes_after_an_offset() {
        let mut cursor = Cursor::new(vec![7u8; 5]);
        cursor.set_position(5);
        let (mut rec, handle) = WavRecorder::new(cursor).expect("set up");
        rec.on_frames(None, None);
        drop(rec);
        let done = tokio_test_block(handle.finished()).expect("ok");
        let bytes = done.writer.into_inner();
        assert_eq!(&bytes[..5], &[7u8; 5]);
        assert_eq!(&bytes[5..9], b"RIFF");
        assert_eq!(bytes.len(), 5 + 44 + 1280);
        assert!(bytes[49..].iter().all(|&b| b == 0), "silence");
    }

    /// A writer that fails after `limit` bytes.
    #[derive(Debug)]
    struct Failing {
        inner: Cursor<Vec<u8>>,
        limit: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.inner.get_ref().len() + buf.len() > self.limit {
                return Err(io::Error::other("disk full"));
            }
            self.inner.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for Failing {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    #[test]
    fn write_errors_are_reported_not_raised() {
        let writer = Failing {
            inner: Cursor::new(Vec::new()),
            limit: 44 + 1280 * 3,
        };
        let (mut rec, mut handle) = WavRecorder::new(writer).expect("set up");
        for _ in 0..10 {
            rec.on_frames(None, None);
        }
        rec.finish();
        let err = handle
            .try_finished()
            .expect("completed")
            .expect_err("fails");
        assert!(err.to_string().contains("disk full"), "{err}");
    }

    fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }
}
