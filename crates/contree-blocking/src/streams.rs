//! Lazy listings as `Iterator`s: the blocking face of the shared pagers.

use std::collections::VecDeque;

use contree_core::Result;

use crate::driver::image::Image;
use crate::driver::images::{ImagePager, ListImages};

impl ListImages {
    /// The listing as an `Iterator`, fetching pages on demand.
    ///
    /// ```no_run
    /// # fn demo(client: contree_blocking::ContreeSync) -> contree_blocking::Result<()> {
    /// for image in client.images().list().tagged(true).iter() {
    ///     let image = image?;
    ///     println!("{:?} {:?}", image.uuid(), image.tag());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn iter(self) -> ImageIter {
        ImageIter { pager: self.pager().map_err(Some), buffered: VecDeque::new() }
    }
}

impl IntoIterator for ListImages {
    type Item = Result<Image>;
    type IntoIter = ImageIter;

    fn into_iter(self) -> ImageIter {
        self.iter()
    }
}

/// An image listing, fetched page by page. An error ends the iteration after it is yielded.
pub struct ImageIter {
    pager: std::result::Result<ImagePager, Option<contree_core::Error>>,
    buffered: VecDeque<Image>,
}

impl Iterator for ImageIter {
    type Item = Result<Image>;

    fn next(&mut self) -> Option<Result<Image>> {
        loop {
            if let Some(image) = self.buffered.pop_front() {
                return Some(Ok(image));
            }
            match &mut self.pager {
                Err(e) => return e.take().map(Err),
                Ok(p) => match p.next_page() {
                    Ok(Some(page)) => self.buffered.extend(page),
                    Ok(None) => return None,
                    Err(e) => {
                        self.pager = Err(None);
                        return Some(Err(e));
                    }
                },
            }
        }
    }
}

impl crate::driver::operations::ListOperations {
    /// The listing as an `Iterator`, fetching pages on demand.
    ///
    /// ```no_run
    /// # fn demo(client: contree_blocking::ContreeSync) -> contree_blocking::Result<()> {
    /// for op in client.operations().list().iter() {
    ///     let op = op?;
    ///     println!("{} {}", op.uuid, op.status);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn iter(self) -> OperationIter {
        OperationIter { pager: self.pager().map_err(Some), buffered: VecDeque::new() }
    }
}

impl IntoIterator for crate::driver::operations::ListOperations {
    type Item = Result<contree_core::models::OperationSummary>;
    type IntoIter = OperationIter;

    fn into_iter(self) -> OperationIter {
        self.iter()
    }
}

/// An operation listing, fetched page by page. An error ends the iteration after it is yielded.
pub struct OperationIter {
    pager: std::result::Result<crate::driver::operations::OperationPager, Option<contree_core::Error>>,
    buffered: VecDeque<contree_core::models::OperationSummary>,
}

impl std::fmt::Debug for OperationIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationIter").field("buffered", &self.buffered.len()).finish_non_exhaustive()
    }
}

impl Iterator for OperationIter {
    type Item = Result<contree_core::models::OperationSummary>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(op) = self.buffered.pop_front() {
                return Some(Ok(op));
            }
            match &mut self.pager {
                Err(e) => return e.take().map(Err),
                Ok(p) => match p.next_page() {
                    Ok(Some(page)) => self.buffered.extend(page),
                    Ok(None) => return None,
                    Err(e) => {
                        self.pager = Err(None);
                        return Some(Err(e));
                    }
                },
            }
        }
    }
}

impl Iterator for crate::driver::process::LineReader {
    type Item = Result<String>;

    /// The next line; see `next_line`.
    fn next(&mut self) -> Option<Result<String>> {
        self.next_line().transpose()
    }
}

impl crate::driver::run::PreparedRun<crate::driver::run::Detached> {
    /// The run's events as an `Iterator`: stdout and stderr chunks as they arrive, the exit,
    /// then `Finished` with the result image. The run starts on the first `next()`.
    pub fn stream(self) -> RunEventIter {
        RunEventIter { events: Some(self.events()) }
    }
}

/// A run's live events. An error ends the iteration after it is yielded.
pub struct RunEventIter {
    events: Option<crate::driver::process::RunEvents>,
}

impl Iterator for RunEventIter {
    type Item = Result<crate::driver::process::RunEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        let events = self.events.as_mut()?;
        match events.next_event() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.events = None;
                None
            }
            Err(e) => {
                self.events = None;
                Some(Err(e))
            }
        }
    }
}
