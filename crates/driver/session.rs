//! Sessions: a mutable cursor that follows each run's result image.
//!
//! Fixes over the Python SDK: runs default to `disposable(false)`; an explicit disposable run
//! leaves the session where it was; a failed or cancelled run leaves it on its last good image.

use contree_core::Result;

use super::image::Image;
use super::process::Process;
use super::run::{PreparedRun, RunSpec};

crate::flavor::declare! {
    /// A session: the current image plus the images it went through.
    #[doc = crate::doc_examples::example!(session)]
    #[derive(Debug, Clone)]
    pub struct Session {
        current: Image,
        history: Vec<Image>,
        last_run: Option<Image>,
    }
}

impl Session {
    pub(crate) fn new(image: Image) -> Session {
        Session { current: image.clone(), history: vec![image], last_run: None }
    }

    /// The image the next run starts from.
    pub fn image(&self) -> &Image {
        &self.current
    }

    /// Every image the session has been on, oldest first (the starting image included; a run
    /// that changed nothing adds no entry).
    pub fn history(&self) -> &[Image] {
        &self.history
    }

    /// The result of the last successful run (disposable ones included), with its output.
    pub fn last_run(&self) -> Option<&Image> {
        self.last_run.as_ref()
    }

    /// Runs `program` from the current image; the session advances to the result.
    #[doc = crate::doc_examples::example!(session)]
    pub fn run(&mut self, program: impl Into<String>) -> PreparedRun<SessionTarget<'_>> {
        let spec = RunSpec::program(&program.into(), false, false);
        PreparedRun { image: self.current.clone(), spec, target: SessionTarget { session: self } }
    }

    /// Runs a shell command (`sh -c`) from the current image; the session advances.
    pub fn shell(&mut self, command: impl Into<String>) -> PreparedRun<SessionTarget<'_>> {
        let spec = RunSpec::program(&command.into(), true, false);
        PreparedRun { image: self.current.clone(), spec, target: SessionTarget { session: self } }
    }

    /// Runs `argv[0]` with the rest as arguments from the current image; the session advances.
    pub fn run_argv<I, S>(&mut self, argv: I) -> PreparedRun<SessionTarget<'_>>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let spec = RunSpec::argv(argv, false);
        PreparedRun { image: self.current.clone(), spec, target: SessionTarget { session: self } }
    }

    /// Starts `argv` from the current image and returns a live process handle (popen). When
    /// the process finishes, the session moves to its result (see the returned handle).
    #[doc = crate::doc_examples::example!(session_popen)]
    #[crate::maybe]
    pub async fn popen<I, S>(&mut self, argv: I) -> Result<SessionProcess<'_>>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.run_argv(argv).spawn().await
    }

    /// Starts a shell command from the current image (popen); see [`popen`](Self::popen).
    #[crate::maybe]
    pub async fn popen_shell(&mut self, command: impl Into<String>) -> Result<SessionProcess<'_>> {
        self.shell(command).spawn().await
    }

    /// Tags the current image and moves the session onto the tagged image (as in Python).
    #[doc = crate::doc_examples::example!(session_tag_as)]
    #[crate::maybe]
    pub async fn tag_as(&mut self, tag: &str) -> Result<Image> {
        let tagged = self.current.tag_as(tag).await?;
        self.current = tagged.clone();
        if let Some(last) = self.history.last_mut()
            && last.uuid == tagged.uuid
        {
            *last = tagged.clone();
        }
        Ok(tagged)
    }

    /// Bakes files into a new image and moves the session onto it. Items are as for the
    /// image's `apply_files`: pairs, file specs or plain local paths.
    #[crate::maybe]
    pub async fn apply_files<I>(&mut self, files: I) -> Result<Image>
    where
        I: IntoIterator,
        I::Item: Into<contree_core::UploadFileSpec>,
    {
        let image = self.current.apply_files(files).await?;
        self.advance(image.clone(), false);
        Ok(image)
    }

    /// Moves the session back to an earlier image of its history (or any image).
    pub fn checkout(&mut self, image: Image) {
        self.current = image.clone();
        self.history.push(image);
    }

    fn advance(&mut self, result: Image, disposable: bool) {
        if !disposable && result.uuid.is_some() {
            // A run that changed nothing yields the same image: not a new step in history.
            if result.uuid != self.current.uuid {
                self.history.push(result.clone());
            }
            self.current = result.clone();
        }
        self.last_run = Some(result);
    }
}

crate::flavor::declare! {
    /// Binds a prepared run to the session it advances.
    #[derive(Debug)]
    pub struct SessionTarget<'a> {
        session: &'a mut Session,
    }
}

impl<'a> PreparedRun<SessionTarget<'a>> {
    /// Executes the run; on success the session moves to the result image (unless the run is
    /// disposable). On failure the session stays where it was.
    #[crate::maybe]
    pub async fn wait(self) -> Result<Image> {
        let result = super::run::execute(&self.image, &self.spec).await?;
        self.target.session.advance(result.clone(), self.spec.disposable);
        Ok(result)
    }

    /// Starts the run and returns a live process handle (popen) that holds the session: when
    /// the process finishes (`wait`, `wait_with_output`, `communicate`), a non-disposable run
    /// moves the session to its result.
    #[crate::maybe]
    pub async fn spawn(self) -> Result<SessionProcess<'a>> {
        let process = Process::start(&self.image, &self.spec).await?;
        Ok(SessionProcess { process, session: self.target.session, disposable: self.spec.disposable, moved: false })
    }
}

crate::flavor::declare! {
    /// A live process started from a session (popen). It derefs to the process handle; the
    /// methods that wait for the end also move the session to the result (unless the run is
    /// disposable, failed or was cancelled). Dropping it before the end cancels the run and
    /// leaves the session where it was.
    #[doc = crate::doc_examples::example!(session_popen)]
    pub struct SessionProcess<'a> {
        process: Process,
        session: &'a mut Session,
        disposable: bool,
        moved: bool,
    }
}

impl std::fmt::Debug for SessionProcess<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(super::short_type_name::<Self>()).field("process", &self.process).finish_non_exhaustive()
    }
}

impl std::ops::Deref for SessionProcess<'_> {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for SessionProcess<'_> {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

impl SessionProcess<'_> {
    /// Waits for the end, moves the session to the result, and returns the exit status.
    #[crate::maybe]
    pub async fn wait(&mut self) -> Result<contree_core::ExitStatus> {
        let status = self.process.wait().await?;
        self.advance().await?;
        Ok(status)
    }

    /// Waits for the end, moves the session to the result, and returns the result image.
    #[crate::maybe]
    pub async fn wait_with_output(mut self) -> Result<Image> {
        self.process.wait().await?;
        self.advance().await
    }

    /// Writes `input` to stdin (if any), closes it, waits, moves the session, and returns
    /// (stdout, stderr).
    #[crate::maybe]
    pub async fn communicate(&mut self, input: impl Into<bytes::Bytes>) -> Result<(bytes::Bytes, bytes::Bytes)> {
        let out = self.process.communicate(input).await?;
        self.advance().await?;
        Ok(out)
    }

    #[crate::maybe]
    async fn advance(&mut self) -> Result<Image> {
        let result = self.process.finished_image().await?;
        if !self.moved {
            self.moved = true;
            self.session.advance(result.clone(), self.disposable);
        }
        Ok(result)
    }
}
