;; needs_infer.wat: imports host.infer. Granted only ["log"], it does not compile:
;; CapabilityError "it imports host.infer but the agent is granted only ['log']".
;; Granted infer, it asks {"prompt":"Say hi","max_tokens":8} and keeps the result as state.
;; Capabilities: infer.
(module
  (import "host" "infer" (func $infer (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "\"state\":")  ;; 8 bytes
  (data (i32.const 32) "{\"max_tokens\":8,\"prompt\":\"Say hi\"}") ;; 34 bytes
  (data (i32.const 80) "{\"state\":")                                  ;; 9 bytes
  (data (i32.const 96) ",\"status\":\"done\"}")                       ;; 17 bytes
  ;; alloc(size) -> ptr: bump allocation; 0 when memory cannot grow
  (func $alloc (export "alloc") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32) (local $pages i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $ptr)) (then (return (i32.const 0))))
    (local.set $pages (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (i32.and (i32.add (local.get $end) (i32.const 7)) (i32.const -8)))
    (local.get $ptr))

  (func (export "step") (param $in i32) (param $len i32) (result i64)
    (local $res i64) (local $n i32) (local $out i32)
    (local.set $res (call $infer (i32.const 32) (i32.const 34)))
    (if (i64.eqz (local.get $res)) (then unreachable))
    (local.set $n (i32.wrap_i64 (local.get $res)))
    (local.set $out (call $alloc (i32.add (local.get $n) (i32.const 26))))
    (if (i32.eqz (local.get $out)) (then unreachable))
    (memory.copy (local.get $out) (i32.const 80) (i32.const 9))
    (memory.copy (i32.add (local.get $out) (i32.const 9))
                 (i32.wrap_i64 (i64.shr_u (local.get $res) (i64.const 32))) (local.get $n))
    (memory.copy (i32.add (local.get $out) (i32.add (local.get $n) (i32.const 9)))
                 (i32.const 96) (i32.const 17))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $n) (i32.const 26))))))
