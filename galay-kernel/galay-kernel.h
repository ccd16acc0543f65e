#pragma once
/// @file galay-kernel.h
/// Umbrella header: the whole public API of galay-kernel.

#include "galay-kernel/version.h"
#include "galay-kernel/common/address.h"
#include "galay-kernel/common/aligned_buffer.h"
#include "galay-kernel/common/error.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/kernel/backend.h"
#include "galay-kernel/kernel/cancel.h"
#include "galay-kernel/kernel/scheduler.h"
#include "galay-kernel/kernel/sleep.h"
#include "galay-kernel/kernel/task.h"
#include "galay-kernel/kernel/when_all.h"
#include "galay-kernel/kernel/when_any.h"
#include "galay-kernel/async/stream_receiver.h"
#include "galay-kernel/async/file.h"
#include "galay-kernel/async/tcp_acceptor.h"
#include "galay-kernel/async/tcp_socket.h"
#include "galay-kernel/async/udp_socket.h"
#include "galay-kernel/async/unix_socket.h"
#include "galay-kernel/kernel/buffer_pool.h"
