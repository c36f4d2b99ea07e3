//! Serving an [`Emulator`] over HTTP: the router, graceful shutdown (which also ends held
//! answers and writes the state file) and [`RunningEmulator`] for in-process tests.

use super::{Emulator, admin, protocol};
use axum::Router;
use axum::routing::any;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

impl Emulator {
    /// The HTTP surface: KMS and STS on `/`, admin on `/_emulator/`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", any(protocol::handle))
            .merge(admin::routes())
            .fallback(protocol::not_found)
            .with_state(self.clone())
    }
}

/// Serves the emulator on `listener` until the process ends.
pub async fn serve(listener: TcpListener, emulator: Emulator) -> io::Result<()> {
    serve_with_shutdown(listener, emulator, std::future::pending()).await
}

/// Serves the emulator on `listener` until `shutdown` completes, then releases held answers,
/// finishes open requests and writes the state file.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    emulator: Emulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let stopping = emulator.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.stop();
    };
    axum::serve(listener, emulator.router()).with_graceful_shutdown(shutdown).await
}

/// An emulator serving in a background task, for in-process tests. Dropping it stops the
/// server too.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    emulator: Emulator,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl RunningEmulator {
    /// Binds `127.0.0.1` on a free port and serves `emulator` there.
    pub async fn start(emulator: Emulator) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::serve_on(listener, emulator)
    }

    /// Serves `emulator` on an already bound listener in a background task.
    pub fn serve_on(listener: TcpListener, emulator: Emulator) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            // Either an explicit stop or the sender being dropped ends the server.
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve_with_shutdown(listener, emulator.clone(), shutdown));
        Ok(Self { addr, emulator, stop: Some(stop), task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, the endpoint to give a client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state, for inspection and control without HTTP.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops accepting, waits for open requests and returns the server's result.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(io::Error::other)?
    }
}
