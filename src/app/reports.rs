//! What the dashboard's history and the streamer API read of a streamer's
//! history: their streams (newest first), one stream's summary
//! ([`crate::domain::stream_summary`], computed once for both), its timeline
//! (buckets and moments) and the moments. Every read is scoped to the
//! streamer: another streamer's stream id finds nothing.

use time::OffsetDateTime;

use super::App;
use super::accounts::ActionError;
use crate::domain::StreamerId;
use crate::domain::history::{HistoryBucket, Moment, MomentFilter, Page, Paged, StreamId, StreamRecord};
use crate::domain::stream_summary::{StreamSummary, summarize};

/// The most moments one stream's summary and timeline carry (a page of the
/// repository's largest size).
const MOMENTS_PER_STREAM: u32 = Page::MAX_PER_PAGE;

/// One stream with its summary and moments.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamReport {
    pub stream: StreamRecord,
    pub summary: StreamSummary,
    pub moments: Vec<Moment>,
}

/// One stream's timeline: its buckets, oldest first, and its moments.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub stream: StreamRecord,
    pub buckets: Vec<HistoryBucket>,
    pub moments: Vec<Moment>,
}

impl App {
    /// A page of the streamer's streams, newest first.
    pub async fn streams_of(&self, streamer: StreamerId, page: Page) -> Result<Paged<StreamRecord>, ActionError> {
        Ok(self.repo.streams_of(streamer, page).await?)
    }

    /// A stream's moments, oldest first.
    async fn stream_moments(&self, streamer: StreamerId, stream: StreamId) -> Result<Vec<Moment>, ActionError> {
        let filter = MomentFilter { stream: Some(stream), ..MomentFilter::default() };
        let mut moments = self.repo.moments_of(streamer, &filter, Page::new(1, MOMENTS_PER_STREAM)).await?.items;
        moments.reverse();
        Ok(moments)
    }

    /// One of the streamer's streams with its buckets and moments; `None`
    /// if they have no such stream.
    pub async fn timeline(&self, streamer: StreamerId, id: StreamId) -> Result<Option<Timeline>, ActionError> {
        let Some(stream) = self.repo.stream(streamer, id).await? else { return Ok(None) };
        let buckets = self.repo.stream_buckets(streamer, id).await?;
        let moments = self.stream_moments(streamer, id).await?;
        Ok(Some(Timeline { stream, buckets, moments }))
    }

    /// One of the streamer's streams, summed up; `None` if they have no
    /// such stream.
    pub async fn stream_report(&self, streamer: StreamerId, id: StreamId) -> Result<Option<StreamReport>, ActionError> {
        let Some(timeline) = self.timeline(streamer, id).await? else { return Ok(None) };
        Ok(Some(report(timeline, OffsetDateTime::now_utc())))
    }

    /// A page of the streamer's streams, each summed up (the dashboard's list).
    pub async fn stream_reports(&self, streamer: StreamerId, page: Page) -> Result<Paged<StreamReport>, ActionError> {
        let streams = self.streams_of(streamer, page).await?;
        let now = OffsetDateTime::now_utc();
        let mut items = Vec::with_capacity(streams.items.len());
        for stream in streams.items {
            let buckets = self.repo.stream_buckets(streamer, stream.id).await?;
            let moments = self.stream_moments(streamer, stream.id).await?;
            items.push(report(Timeline { stream, buckets, moments }, now));
        }
        Ok(Paged { items, total: streams.total })
    }

    /// A page of the streamer's moments matching `filter`, newest first.
    pub async fn moments_of(
        &self,
        streamer: StreamerId,
        filter: &MomentFilter,
        page: Page,
    ) -> Result<Paged<Moment>, ActionError> {
        Ok(self.repo.moments_of(streamer, filter, page).await?)
    }
}

fn report(timeline: Timeline, now: OffsetDateTime) -> StreamReport {
    let summary = summarize(&timeline.stream, &timeline.buckets, &timeline.moments, now);
    StreamReport { stream: timeline.stream, summary, moments: timeline.moments }
}
