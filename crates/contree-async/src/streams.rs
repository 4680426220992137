//! Lazy listings as `Stream`s: the async face of the shared pagers.

use std::collections::VecDeque;

use contree_core::Result;
use futures_util::stream::{self, Stream};

use crate::driver::image::Image;
use crate::driver::images::ListImages;

impl ListImages {
    /// The listing as a `Stream`, fetching pages on demand.
    ///
    /// ```no_run
    /// # async fn demo(client: contree_async::Contree) -> contree_async::Result<()> {
    /// use futures_util::TryStreamExt;
    /// let mut images = client.images().list().tagged(true).stream();
    /// while let Some(image) = images.try_next().await? {
    ///     println!("{:?} {:?}", image.uuid(), image.tag());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream(self) -> impl Stream<Item = Result<Image>> + Send + Unpin + 'static {
        let state = (self.pager().map_err(Some), VecDeque::new());
        // Boxed so the stream is `Unpin`: `try_next()` works without pinning it first.
        Box::pin(stream::unfold(state, |(mut pager, mut buffered)| async move {
            loop {
                if let Some(image) = buffered.pop_front() {
                    return Some((Ok(image), (pager, buffered)));
                }
                match &mut pager {
                    Err(e) => return e.take().map(|e| (Err(e), (pager, buffered))),
                    Ok(p) => match p.next_page().await {
                        Ok(Some(page)) => buffered.extend(page),
                        Ok(None) => return None,
                        Err(e) => return Some((Err(e), (Err(None), buffered))),
                    },
                }
            }
        }))
    }
}

impl crate::driver::operations::ListOperations {
    /// The listing as a `Stream`, fetching pages on demand.
    ///
    /// ```no_run
    /// # async fn demo(client: contree_async::Contree) -> contree_async::Result<()> {
    /// use futures_util::TryStreamExt;
    /// let mut ops = client.operations().list().stream();
    /// while let Some(op) = ops.try_next().await? {
    ///     println!("{} {}", op.uuid, op.status);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream(self) -> impl Stream<Item = Result<contree_core::models::OperationSummary>> + Send + Unpin + 'static {
        let state = (self.pager().map_err(Some), VecDeque::new());
        Box::pin(stream::unfold(state, |(mut pager, mut buffered)| async move {
            loop {
                if let Some(op) = buffered.pop_front() {
                    return Some((Ok(op), (pager, buffered)));
                }
                match &mut pager {
                    Err(e) => return e.take().map(|e| (Err(e), (pager, buffered))),
                    Ok(p) => match p.next_page().await {
                        Ok(Some(page)) => buffered.extend(page),
                        Ok(None) => return None,
                        Err(e) => return Some((Err(e), (Err(None), buffered))),
                    },
                }
            }
        }))
    }
}

impl std::future::IntoFuture for crate::driver::operations::ListOperations {
    type Output = Result<Vec<contree_core::models::OperationSummary>>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'static>>;

    /// Awaiting the builder sends it (`send()`).
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl std::future::IntoFuture for ListImages {
    type Output = Result<Vec<Image>>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'static>>;

    /// Awaiting the builder sends it (`send()`).
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl std::future::IntoFuture for crate::driver::images::ImportImage {
    type Output = Result<Image>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'static>>;

    /// Awaiting the builder sends it (`send()`).
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl std::future::IntoFuture for crate::driver::grep::GrepImage {
    type Output = Result<contree_core::models::GrepResult>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'static>>;

    /// Awaiting the builder sends it (`send()`).
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl std::future::IntoFuture for crate::driver::subprocess::PreparedExec {
    type Output = Result<crate::driver::subprocess::Subprocess>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'static>>;

    /// Awaiting a prepared exec starts the process (`spawn()`).
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.spawn())
    }
}

impl crate::driver::process::LineReader {
    /// The lines as a `Stream` (text mode). An error (a line that is not UTF-8) ends it.
    ///
    /// ```no_run
    /// # async fn demo(image: contree_async::ContreeImage) -> contree_async::Result<()> {
    /// use futures_util::TryStreamExt;
    /// let mut process = image.popen(["sh", "-c", "echo a; echo b"]).await?;
    /// let lines: Vec<String> = process.stdout_lines().expect("taken once").stream().try_collect().await?;
    /// assert_eq!(lines, ["a", "b"]);
    /// # Ok(()) }
    /// ```
    pub fn stream(self) -> impl Stream<Item = Result<String>> + Send + Unpin + 'static {
        Box::pin(stream::unfold(Some(self), |state| async move {
            let mut lines = state?;
            match lines.next_line().await {
                Ok(Some(line)) => Some((Ok(line), Some(lines))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        }))
    }
}

impl crate::driver::run::PreparedRun<crate::driver::run::Detached> {
    /// The run's events as a `Stream`: stdout and stderr chunks as they arrive, the exit, then
    /// `Finished` with the result image. The run starts when the stream is first polled.
    pub fn stream(self) -> impl Stream<Item = Result<crate::driver::process::RunEvent>> + Send + Unpin + 'static {
        Box::pin(stream::unfold(Some(self.events()), |state| async move {
            let mut events = state?;
            match events.next_event().await {
                Ok(Some(e)) => Some((Ok(e), Some(events))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        }))
    }
}

impl std::future::IntoFuture for crate::driver::run::PreparedRun<crate::driver::run::Detached> {
    type Output = Result<Image>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Image>> + Send + 'static>>;

    /// Awaiting a prepared run executes it (`wait()`). To execute it again, clone it first.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.wait().await })
    }
}

impl<'a> std::future::IntoFuture for crate::driver::run::PreparedRun<crate::driver::session::SessionTarget<'a>> {
    type Output = Result<Image>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Image>> + Send + 'a>>;

    /// Awaiting a session run executes it and advances the session.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}
