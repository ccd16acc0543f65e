/* <sys/event.h> for Linux: a kqueue/kevent emulation on epoll, used to build and test the
 * kqueue backend where no BSD kernel is available. Only what the backend needs is here; a
 * filter or flag this file does not define is not emulated (better a compile error than a
 * silent difference).
 *
 * Numeric values follow FreeBSD (EV_* and NOTE_FF* are the same on macOS; EVFILT_USER is
 * -11 on FreeBSD, -10 on macOS; timer units follow FreeBSD, which has NOTE_MSECONDS).
 *
 * A kqueue descriptor is a real epoll descriptor: close(2) releases every kernel resource it
 * holds. The emulation's bookkeeping for a closed kqueue is dropped the next time kqueue() is
 * called or kevent() is given that number. See kqueue_emu.cc for the semantics emulated. */
#ifndef GALAY_KQUEUE_EMU_SYS_EVENT_H
#define GALAY_KQUEUE_EMU_SYS_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

struct kevent {
  uintptr_t ident; /* fd for READ/WRITE, any id for USER/TIMER */
  int16_t filter;  /* EVFILT_* */
  uint16_t flags;  /* EV_* */
  uint32_t fflags; /* filter flags (NOTE_*); socket error on EV_EOF */
  intptr_t data;   /* filter data (bytes, expirations, timer period, errno on EV_ERROR) */
  void* udata;     /* opaque, returned unchanged */
};

#define EV_SET(kevp, a, b, c, d, e, f)    \
  do {                                    \
    struct kevent* ev_set_kevp_ = (kevp); \
    ev_set_kevp_->ident = (a);            \
    ev_set_kevp_->filter = (b);           \
    ev_set_kevp_->flags = (c);            \
    ev_set_kevp_->fflags = (d);           \
    ev_set_kevp_->data = (e);             \
    ev_set_kevp_->udata = (f);            \
  } while (0)

/* filters */
#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_TIMER (-7)
#define EVFILT_USER (-11)

/* actions */
#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_ENABLE 0x0004
#define EV_DISABLE 0x0008

/* flags */
#define EV_ONESHOT 0x0010
#define EV_CLEAR 0x0020
#define EV_RECEIPT 0x0040
#define EV_DISPATCH 0x0080

/* returned values */
#define EV_SYSFLAGS 0xF000
#define EV_ERROR 0x4000
#define EV_EOF 0x8000

/* EVFILT_USER */
#define NOTE_FFNOP 0x00000000
#define NOTE_FFAND 0x40000000
#define NOTE_FFOR 0x80000000
#define NOTE_FFCOPY 0xc0000000
#define NOTE_FFCTRLMASK 0xc0000000
#define NOTE_FFLAGSMASK 0x00ffffff
#define NOTE_TRIGGER 0x01000000

/* EVFILT_TIMER units; none given means milliseconds */
#define NOTE_SECONDS 0x00000001
#define NOTE_MSECONDS 0x00000002
#define NOTE_USECONDS 0x00000004
#define NOTE_NSECONDS 0x00000008

#if defined(__cplusplus) && defined(__GNUC__)
/* The function shares the struct's name, as in BSD; -Wshadow would flag every includer. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#endif
int kqueue(void);
int kevent(int kq, const struct kevent* changelist, int nchanges, struct kevent* eventlist, int nevents,
           const struct timespec* timeout);
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/* Emulation only (no BSD equivalent): how many kqueues the emulation keeps state for, after
 * dropping the state of those closed with close(2). For leak tests. */
size_t kqueue_emu_instances(void);

#ifdef __cplusplus
}
#endif

#endif /* GALAY_KQUEUE_EMU_SYS_EVENT_H */
