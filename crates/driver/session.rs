//! Sessions: a mutable cursor that follows each run's result image.
//!
//! Fixes over the Python SDK: runs default to `disposable(false)`; an explicit disposable run
//! leaves the session where it was; a failed or cancelled run leaves it on its last good image.

use contree_core::Result;

use super::image::Image;
use super::run::{PreparedRun, RunSpec, RunTarget};

/// A session: the current image plus the images it went through.
#[derive(Debug, Clone)]
pub struct Session {
    current: Image,
    history: Vec<Image>,
    last_run: Option<Image>,
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
    pub fn run(&mut self, program: impl Into<String>) -> PreparedRun<SessionTarget<'_>> {
        let spec = RunSpec::program(&program.into(), false, false);
        PreparedRun { image: self.current.clone(), spec, target: SessionTarget { session: self } }
    }

    /// Runs a shell command (`sh -c`) from the current image; the session advances.
    pub fn shell(&mut self, command: impl Into<String>) -> PreparedRun<SessionTarget<'_>> {
        let spec = RunSpec::program(&command.into(), true, false);
        PreparedRun { image: self.current.clone(), spec, target: SessionTarget { session: self } }
    }

    /// Bakes files into a new image and moves the session onto it.
    #[crate::maybe]
    pub async fn apply_files<I, D, S>(&mut self, files: I) -> Result<Image>
    where
        I: IntoIterator<Item = (D, S)>,
        D: Into<String>,
        S: Into<super::run::FileSource>,
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

/// Binds a prepared run to the session it advances.
#[derive(Debug)]
pub struct SessionTarget<'a> {
    session: &'a mut Session,
}
impl RunTarget for SessionTarget<'_> {}

impl<'a> PreparedRun<SessionTarget<'a>> {
    /// Executes the run; on success the session moves to the result image (unless the run is
    /// disposable). On failure the session stays where it was.
    #[crate::maybe]
    pub async fn wait(self) -> Result<Image> {
        let result = super::run::execute(&self.image, &self.spec).await?;
        self.target.session.advance(result.clone(), self.spec.disposable);
        Ok(result)
    }
}
