"""The 'visual Turing test' of §3.1 as a local web page.

The paper measured how real the refined images look with a user study: each subject saw 50 real
and 50 refined images, one at a time in random order, while 20 labelled examples of each kind stayed
on screen, and labelled every image real or refined. Table 1 is the confusion matrix over 10 subjects
(517 of 1000 correct, 51.7%, chance 50%); the same study with unrefined synthetic images instead gave
162 of 200 correct, far above chance.

- :mod:`simgan.turing.store` — the SQLite database: studies, the image index (opaque ids), sessions
  with their stored image order, and one transaction per answer.
- :mod:`simgan.turing.report` — Table 1 and the binomial test, for the results page and the CLI.
- :mod:`simgan.turing.server` — the Flask app (``create_app``) and a threaded WSGI server.

The second kind of image is called "not real" on screen, so that one tool runs both of the paper's
studies: ``--refined`` pointed at refined images (Table 1) or at raw synthetic images.
"""

from __future__ import annotations

__all__ = ["create_app", "make_server"]


def __getattr__(name):
    # Flask is imported only when the server is wanted (the report needs only the store).
    if name in __all__:
        from . import server
        return getattr(server, name)
    raise AttributeError(name)
