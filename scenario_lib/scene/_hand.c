/* The abstract hand's controller, compiled: one call per action runs its PD updates and MuJoCo steps.

   `scenario_lib.scene.actuation.Hand` holds one `HandKernel` and calls `act` once per control period; the
   kernel steps `mjData` through libmujoco directly, so an action costs one Python call instead of the
   float arithmetic of four PD updates in the interpreter. Every value it hands to MuJoCo is bit for bit
   the numpy formulation the stored demonstrations were recorded with (tests/scene/test_actuation.py):
   IEEE double arithmetic in the same order (built with -ffp-contract=off, so the compiler fuses nothing
   on its own), the quaternion helpers in the operation order of libmujoco's mju_* routines, and the two
   inertia products with the fused multiply-adds of OpenBLAS's small dgemm and dgemv kernels, written out
   as fma() calls in their order (so the result no longer depends on which kernel OpenBLAS picks for the
   CPU). The riders on a joint are summed in the order a CPython set of their body ids iterates, as the
   reference does. See actuation.py's module doc for what the controller does. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include <mujoco/mujoco.h>

#include "_kernel.h"

#define KIND_FREE 0
#define KIND_HINGE 1
#define KIND_SLIDE 2
#define MJ_MINVAL 1e-15
#define SMALL_ANGLE_RAD 1e-12
#define MAX_UPDATES 16

typedef struct {
  int body_id, kind, dof, qpos;
  double subtree_mass, inertia[3], own_joint_inertia;
} Body;

typedef struct {
  PyObject_HEAD
  PyObject *model_object, *data_object;  /* kept alive while the kernel points into them */
  const mjModel *m;
  mjData *d;
  Body *bodies;
  int nbodies;
  unsigned char *rides_freely;  /* per model body: on one free joint */
  double max_force, max_torque, max_speed, max_angular_speed, max_joint_speed_rad, max_joint_speed_m;
  double omega, joint_omega, gravity, update_dt;
  int update_steps[MAX_UPDATES], nupdates, steps_per_action;
  int held;  /* -1: nothing held */
  double set_pos[3], set_quat[4], set_joint, joint_integral;
  PyObject *record;  /* None, or a list that gets (nstep, xfrc_applied bytes, qfrc_applied bytes) per mj_step call */
} HandKernel;

/* -- quaternion arithmetic in libmujoco's operation order (w, x, y, z) */

static void mul_quat(double r[4], const double a[4], const double b[4]) {
  double t0 = (a[0] * b[0] - a[1] * b[1]) + (-a[2] * b[2] - a[3] * b[3]);
  double t1 = (a[0] * b[1] + a[1] * b[0]) + (a[2] * b[3] - a[3] * b[2]);
  double t2 = (a[0] * b[2] - a[1] * b[3]) + (a[2] * b[0] + a[3] * b[1]);
  double t3 = (a[0] * b[3] + a[1] * b[2]) + (-a[2] * b[1] + a[3] * b[0]);
  r[0] = t0; r[1] = t1; r[2] = t2; r[3] = t3;
}

static void normalize_quat(double q[4]) {
  double norm = sqrt((q[0] * q[0] + q[1] * q[1]) + (q[2] * q[2] + q[3] * q[3]));
  if (norm < MJ_MINVAL) {
    q[0] = 1.0; q[1] = 0.0; q[2] = 0.0; q[3] = 0.0;
  } else if (fabs(norm - 1.0) > MJ_MINVAL) {
    double scale = 1.0 / norm;
    q[0] = q[0] * scale; q[1] = q[1] * scale; q[2] = q[2] * scale; q[3] = q[3] * scale;
  }
}

static void rotation_of_quat(double r[3], double w, double x, double y, double z) {
  double sin_half = sqrt((x * x + y * y) + z * z);
  double angle = atan2(sin_half, w);
  angle = angle + angle;
  if (angle > M_PI) angle = angle + -2 * M_PI;
  if (sin_half < MJ_MINVAL) {
    r[0] = angle; r[1] = 0.0 * angle; r[2] = 0.0 * angle;
    return;
  }
  double scale = 1.0 / sin_half;
  r[0] = x * scale * angle; r[1] = y * scale * angle; r[2] = z * scale * angle;
}

static void quat_of_rotation(double q[4], double x, double y, double z) {
  double angle = sqrt((x * x + y * y) + z * z);
  if (angle < SMALL_ANGLE_RAD) {
    q[0] = 1.0; q[1] = 0.0; q[2] = 0.0; q[3] = 0.0;
    return;
  }
  double half = angle * 0.5, sin_half = sin(half);
  q[0] = cos(half); q[1] = x / angle * sin_half; q[2] = y / angle * sin_half; q[3] = z / angle * sin_half;
}

/* The rotation vector that turns `current` into `target`, the short way. */
static void quat_error(double r[3], const double t[4], const double c[4]) {
  double n1 = -c[1], n2 = -c[2], n3 = -c[3];
  double w = (t[0] * c[0] - t[1] * n1) + (-t[2] * n2 - t[3] * n3);
  double x = (t[0] * n1 + t[1] * c[0]) + (t[2] * n3 - t[3] * n2);
  double y = (t[0] * n2 - t[1] * n3) + (t[2] * c[0] + t[3] * n1);
  double z = (t[0] * n3 + t[1] * n2) + (-t[2] * n1 + t[3] * c[0]);
  if (w < 0) { w = -w; x = -x; y = -y; z = -z; }
  rotation_of_quat(r, w, x, y, z);
}

static void clamp_norm(double *out, double x, double y, double z, double bound) {
  double norm = sqrt((x * x + y * y) + z * z);
  if (norm <= bound || norm == 0.0) {
    out[0] = x; out[1] = y; out[2] = z;
    return;
  }
  double scale = bound / norm;
  out[0] = x * scale; out[1] = y * scale; out[2] = z * scale;
}

/* -- stepping */

static int step(HandKernel *self, int nstep) {
  if (self->record != Py_None) {
    const mjModel *m = self->m;
    PyObject *entry = Py_BuildValue(
        "(iy#y#)", nstep, (const char *)self->d->xfrc_applied, (Py_ssize_t)(sizeof(mjtNum) * 6 * m->nbody),
        (const char *)self->d->qfrc_applied, (Py_ssize_t)(sizeof(mjtNum) * m->nv));
    if (entry == NULL || PyList_Append(self->record, entry) < 0) {
      Py_XDECREF(entry);
      return -1;
    }
    Py_DECREF(entry);
  }
  for (int i = 0; i < nstep; i++) mj_step(self->m, self->d);
  return 0;
}

static int act_free(HandKernel *self, const Body *body, const double target_pos[3], const double rotation[3]) {
  const mjModel *m = self->m;
  mjData *d = self->d;
  int id = body->body_id;
  double dt = self->update_dt;
  double reach = self->max_speed * dt, turn = self->max_angular_speed * dt;
  double stiffness = self->omega * self->omega, damping = 2 * self->omega;
  double mass = body->subtree_mass, weight = mass * self->gravity;
  double target_quat[4], velocity[6], error[3], partial[4];
  quat_of_rotation(target_quat, rotation[0], rotation[1], rotation[2]);
  double *set = self->set_pos, *set_quat = self->set_quat;
  const double *position = d->xpos + 3 * id, *orientation = d->xquat + 4 * id;
  const double *frame = d->ximat + 9 * id;
  double *wrench = d->xfrc_applied + 6 * id;
  for (int update = 0; update < self->nupdates; update++) {
    /* The set-point moves toward the target by at most the speed limits. */
    double sx = target_pos[0] - set[0], sy = target_pos[1] - set[1], sz = target_pos[2] - set[2];
    double distance = sqrt((sx * sx + sy * sy) + sz * sz);
    if (distance <= reach) {
      set[0] = set[0] + sx; set[1] = set[1] + sy; set[2] = set[2] + sz;
    } else {
      double scale = reach / distance;
      set[0] = set[0] + sx * scale; set[1] = set[1] + sy * scale; set[2] = set[2] + sz * scale;
    }
    quat_error(error, target_quat, set_quat);
    double angle = sqrt((error[0] * error[0] + error[1] * error[1]) + error[2] * error[2]);
    if (angle > SMALL_ANGLE_RAD) {
      double ratio = turn / angle, scale = ratio < 1.0 ? ratio : 1.0;
      quat_of_rotation(partial, error[0] * scale, error[1] * scale, error[2] * scale);
      mul_quat(set_quat, partial, set_quat);
      normalize_quat(set_quat);
    }
    /* The wrench toward the set-point, gravity compensated. */
    mj_objectVelocity(m, d, mjOBJ_BODY, id, velocity, 0);
    double force_x = mass * (stiffness * (set[0] - position[0]) - damping * velocity[3]);
    double force_y = mass * (stiffness * (set[1] - position[1]) - damping * velocity[4]);
    double force_z = mass * (stiffness * (set[2] - position[2]) - damping * velocity[5]) + weight;
    /* The world-frame inertia frame · diag(I) · frameᵀ as OpenBLAS's dgemm computes it: each element an
       fma chain over k = 0, 1, 2 (the diagonal's zeros included, as a full matrix product has them). */
    double scaled[9], inertia[9];
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 3; j++) {
        double d0 = j == 0 ? body->inertia[0] : 0.0, d1 = j == 1 ? body->inertia[1] : 0.0, d2 = j == 2 ? body->inertia[2] : 0.0;
        scaled[3 * i + j] = fma(frame[3 * i + 2], d2, fma(frame[3 * i + 1], d1, frame[3 * i] * d0));
      }
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 3; j++)
        inertia[3 * i + j] = fma(scaled[3 * i + 2], frame[3 * j + 2], fma(scaled[3 * i + 1], frame[3 * j + 1], scaled[3 * i] * frame[3 * j]));
    quat_error(error, set_quat, orientation);
    double acceleration[3] = {
        stiffness * error[0] - damping * velocity[0],
        stiffness * error[1] - damping * velocity[1],
        stiffness * error[2] - damping * velocity[2],
    };
    /* inertia · acceleration as OpenBLAS's dgemv: the middle column first, then the first, then the last. */
    double torque[3];
    for (int i = 0; i < 3; i++)
      torque[i] = fma(inertia[3 * i + 2], acceleration[2], fma(inertia[3 * i], acceleration[0], inertia[3 * i + 1] * acceleration[1]));
    clamp_norm(wrench, force_x, force_y, force_z, self->max_force);
    clamp_norm(wrench + 3, torque[0], torque[1], torque[2], self->max_torque);
    if (step(self, self->update_steps[update]) < 0) return -1;
  }
  return 0;
}

/* The order a CPython set iterates small non-negative ints added in `order` (CPython 3.11's setobject.c:
   8 slots, no linear probes below 10 slots, perturbed probing, a resize to the smallest power of two above
   4 × used once fill × 5 ≥ mask × 3). Writes the iteration order over `order` and returns the count. */
#define SET_SLOTS_MAX 256
#define PERTURB_SHIFT 5
#define LINEAR_PROBES 9

/* Adds `key` to the open-addressed `table`; 1 if it was not there yet. */
static int set_insert(long *table, size_t mask, long key) {
  size_t perturb = (size_t)key, i = (size_t)key & mask;
  while (1) {
    long *entry = &table[i];
    size_t probes = (i + LINEAR_PROBES <= mask) ? LINEAR_PROBES : 0;
    do {
      if (*entry < 0) { *entry = key; return 1; }
      if (*entry == key) return 0;
      entry++;
    } while (probes--);
    perturb >>= PERTURB_SHIFT;
    i = (i * 5 + 1 + perturb) & mask;
  }
}

static int set_order(long *order, int count) {
  long table[SET_SLOTS_MAX], resized[SET_SLOTS_MAX];
  size_t mask = 7;
  int used = 0;
  for (size_t i = 0; i < SET_SLOTS_MAX; i++) table[i] = -1;
  for (int n = 0; n < count; n++) {
    if (!set_insert(table, mask, order[n])) continue;
    used++;
    if ((size_t)used * 5 < mask * 3) continue;
    size_t size = 8;
    while (size <= (size_t)used * 4) size <<= 1;
    if (size > SET_SLOTS_MAX) return -1;
    for (size_t i = 0; i < size; i++) resized[i] = -1;
    for (size_t i = 0; i <= mask; i++)
      if (table[i] >= 0) set_insert(resized, size - 1, table[i]);
    mask = size - 1;
    memcpy(table, resized, sizeof(long) * size);
  }
  int written = 0;
  for (size_t i = 0; i <= mask; i++)
    if (table[i] >= 0) order[written++] = table[i];
  return written;
}

/* The joint's inertia plus that of the free bodies resting on it, and the effort that holds their weight. */
static int joint_payload(HandKernel *self, int index, double *inertia_out, double *bias_out) {
  const mjModel *m = self->m;
  const mjData *d = self->d;
  const Body *body = &self->bodies[index];
  double inertia = body->own_joint_inertia;
  *inertia_out = inertia;
  *bias_out = 0.0;
  if (d->ncon == 0) return 0;
  long riders[SET_SLOTS_MAX];
  int count = 0;
  for (int c = 0; c < d->ncon && count < SET_SLOTS_MAX; c++) {
    int first = m->geom_bodyid[d->contact[c].geom[0]], second = m->geom_bodyid[d->contact[c].geom[1]];
    if (body->body_id == first || body->body_id == second) {
      int other = first == body->body_id ? second : first;
      if (self->rides_freely[other]) riders[count++] = other;
    }
  }
  if (count == 0) return 0;
  count = set_order(riders, count);
  if (count < 0) {
    PyErr_SetString(PyExc_RuntimeError, "the hand's kernel cannot order more than 60 riders on one joint");
    return -1;
  }
  int joint = m->body_jntadr[body->body_id];
  const double *axis = d->xaxis + 3 * joint, *anchor = d->xanchor + 3 * joint;
  int hinge = body->kind == KIND_HINGE;
  double weight_bias = 0.0, g = self->gravity;
  for (int r = 0; r < count; r++) {
    int other = (int)riders[r];
    double mass = m->body_mass[other];
    double wx = mass * 0.0, wy = mass * 0.0, wz = mass * -g;
    if (hinge) {
      const double *center = d->xipos + 3 * other;
      double lx = center[0] - anchor[0], ly = center[1] - anchor[1], lz = center[2] - anchor[2];
      double ax = ly * axis[2] - lz * axis[1], ay = lz * axis[0] - lx * axis[2], az = lx * axis[1] - ly * axis[0];
      inertia += mass * ((ax * ax + ay * ay) + az * az);
      double mx = ly * wz - lz * wy, my = lz * wx - lx * wz, mz = lx * wy - ly * wx;
      weight_bias -= (mx * axis[0] + my * axis[1]) + mz * axis[2];
    } else {
      inertia += mass;
      weight_bias -= (wx * axis[0] + wy * axis[1]) + wz * axis[2];
    }
  }
  *inertia_out = inertia;
  *bias_out = weight_bias;
  return 0;
}

static int act_joint(HandKernel *self, int index, double target) {
  const Body *body = &self->bodies[index];
  mjData *d = self->d;
  double inertia, payload_bias;
  if (joint_payload(self, index, &inertia, &payload_bias) < 0) return -1;
  int hinge = body->kind == KIND_HINGE;
  double speed = hinge ? self->max_joint_speed_rad : self->max_joint_speed_m;
  double bound = hinge ? self->max_torque : self->max_force;
  double dt = self->update_dt, half_omega = self->joint_omega / 2;
  double gain = inertia * (half_omega * half_omega * half_omega);
  double stiffness = self->joint_omega * self->joint_omega, damping = 3 * self->joint_omega;
  double setpoint = self->set_joint, integral = self->joint_integral, reach = speed * dt;
  for (int update = 0; update < self->nupdates; update++) {
    double move = target - setpoint;
    move = move < reach ? move : reach;
    setpoint += move > -reach ? move : -reach;
    double joint_error = setpoint - d->qpos[body->qpos];
    if (joint_error * integral < 0) integral *= 0.5; /* past the target: unwind fast instead of overshooting */
    integral = integral + gain * joint_error * dt;
    integral = integral < bound ? integral : bound;
    integral = integral > -bound ? integral : -bound;
    double effort = inertia * (stiffness * joint_error - damping * d->qvel[body->dof]) + integral
                    + d->qfrc_bias[body->dof] + payload_bias;
    effort = effort < bound ? effort : bound;
    d->qfrc_applied[body->dof] = effort > -bound ? effort : -bound;
    if (step(self, self->update_steps[update]) < 0) {
      self->set_joint = setpoint;
      self->joint_integral = integral;
      return -1;
    }
  }
  self->set_joint = setpoint;
  self->joint_integral = integral;
  return 0;
}

static void release(HandKernel *self) {
  if (self->held >= 0) {
    const Body *body = &self->bodies[self->held];
    memset(self->d->xfrc_applied + 6 * body->body_id, 0, sizeof(mjtNum) * 6);
    if (body->kind != KIND_FREE) self->d->qfrc_applied[body->dof] = 0.0;
  }
  self->held = -1;
}

/* act(body, grasp, x, y, z, rx, ry, rz, joint): one control period. */
static PyObject *kernel_act(HandKernel *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 9) {
    PyErr_Format(PyExc_TypeError, "act takes 9 arguments (body, grasp, x, y, z, rx, ry, rz, joint), got %zd", nargs);
    return NULL;
  }
  long index = PyLong_AsLong(args[0]);
  if (index == -1 && PyErr_Occurred()) return NULL;
  int grasp = PyObject_IsTrue(args[1]);
  if (grasp < 0) return NULL;
  double values[7];
  for (int i = 0; i < 7; i++) {
    values[i] = PyFloat_AsDouble(args[2 + i]);
    if (values[i] == -1.0 && PyErr_Occurred()) return NULL;
  }
  if (index < 0 || index >= self->nbodies) {
    PyErr_Format(PyExc_ValueError, "action body %ld is not one of the %d movable bodies", index, self->nbodies);
    return NULL;
  }
  int failed;
  if (!grasp) {
    release(self);
    failed = step(self, self->steps_per_action);
  } else {
    const Body *body = &self->bodies[index];
    if (self->held != index) {
      release(self);
      self->held = (int)index;
      memcpy(self->set_pos, self->d->xpos + 3 * body->body_id, sizeof(double) * 3);
      memcpy(self->set_quat, self->d->xquat + 4 * body->body_id, sizeof(double) * 4);
      self->set_joint = self->d->qpos[body->qpos];
      self->joint_integral = 0.0;
    }
    failed = body->kind == KIND_FREE ? act_free(self, body, values, values + 3) : act_joint(self, (int)index, values[6]);
  }
  if (failed) return NULL;
  Py_RETURN_NONE;
}

static PyObject *kernel_get_record(HandKernel *self, void *Py_UNUSED(closure)) {
  Py_INCREF(self->record);
  return self->record;
}

static int kernel_set_record(HandKernel *self, PyObject *value, void *Py_UNUSED(closure)) {
  if (value == NULL || (value != Py_None && !PyList_Check(value))) {
    PyErr_SetString(PyExc_TypeError, "record is a list (each mj_step call appends to it) or None");
    return -1;
  }
  Py_INCREF(value);
  Py_SETREF(self->record, value);
  return 0;
}

/* HandKernel(model, data, bodies, rides_freely, limits, constants, update_steps, update_dt, steps_per_action)
   bodies: (body_id, kind, dof, qpos, subtree_mass, ixx, iyy, izz, own_joint_inertia) per movable body;
   rides_freely: bytes, one per model body; limits: the six HandLimits floats; constants: (omega, joint_omega,
   gravity). */
static int kernel_init(HandKernel *self, PyObject *args, PyObject *kwargs) {
  PyObject *model, *data, *bodies, *limits, *constants, *update_steps;
  Py_buffer rides;
  double update_dt;
  int steps_per_action;
  if (!PyArg_ParseTuple(args, "OOOy*OOOdi", &model, &data, &bodies, &rides, &limits, &constants, &update_steps,
                        &update_dt, &steps_per_action))
    return -1;
  int result = -1;
  if (require_built_mujoco("hand") < 0) goto done;
  self->m = (const mjModel *)address_of(model);
  self->d = (mjData *)address_of(data);
  if (self->m == NULL || self->d == NULL) goto done;
  if (rides.len != self->m->nbody) {
    PyErr_SetString(PyExc_ValueError, "rides_freely needs one byte per model body");
    goto done;
  }
  Py_XSETREF(self->model_object, Py_NewRef(model));
  Py_XSETREF(self->data_object, Py_NewRef(data));
  PyMem_Free(self->rides_freely);
  self->rides_freely = PyMem_Malloc(rides.len);
  if (self->rides_freely == NULL) { PyErr_NoMemory(); goto done; }
  memcpy(self->rides_freely, rides.buf, rides.len);
  Py_ssize_t count = PySequence_Size(bodies);
  if (count < 0) goto done;
  PyMem_Free(self->bodies);
  self->bodies = PyMem_Calloc(count > 0 ? count : 1, sizeof(Body));
  if (self->bodies == NULL) { PyErr_NoMemory(); goto done; }
  self->nbodies = (int)count;
  for (Py_ssize_t i = 0; i < count; i++) {
    PyObject *row = PySequence_GetItem(bodies, i);
    if (row == NULL) goto done;
    Body *b = &self->bodies[i];
    int ok = PyArg_ParseTuple(row, "iiiiddddd", &b->body_id, &b->kind, &b->dof, &b->qpos, &b->subtree_mass,
                              &b->inertia[0], &b->inertia[1], &b->inertia[2], &b->own_joint_inertia);
    Py_DECREF(row);
    if (!ok) goto done;
  }
  if (!PyArg_ParseTuple(limits, "dddddd", &self->max_force, &self->max_torque, &self->max_speed,
                        &self->max_angular_speed, &self->max_joint_speed_rad, &self->max_joint_speed_m))
    goto done;
  if (!PyArg_ParseTuple(constants, "ddd", &self->omega, &self->joint_omega, &self->gravity)) goto done;
  Py_ssize_t updates = PySequence_Size(update_steps);
  if (updates < 1 || updates > MAX_UPDATES) {
    if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "update_steps holds 1 to %d step counts", MAX_UPDATES);
    goto done;
  }
  for (Py_ssize_t i = 0; i < updates; i++) {
    PyObject *item = PySequence_GetItem(update_steps, i);
    if (item == NULL) goto done;
    self->update_steps[i] = (int)PyLong_AsLong(item);
    Py_DECREF(item);
    if (PyErr_Occurred()) goto done;
  }
  self->nupdates = (int)updates;
  self->update_dt = update_dt;
  self->steps_per_action = steps_per_action;
  self->held = -1;
  self->set_quat[0] = 1.0;
  Py_XSETREF(self->record, Py_NewRef(Py_None));
  result = 0;
done:
  PyBuffer_Release(&rides);
  return result;
}

static void kernel_dealloc(HandKernel *self) {
  Py_XDECREF(self->model_object);
  Py_XDECREF(self->data_object);
  Py_XDECREF(self->record);
  PyMem_Free(self->bodies);
  PyMem_Free(self->rides_freely);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *module_set_order(PyObject *Py_UNUSED(module), PyObject *keys) {
  /* The iteration order of a CPython set of these small ints, as the kernel computes it (for the tests). */
  long order[SET_SLOTS_MAX];
  Py_ssize_t count = PySequence_Size(keys);
  if (count < 0) return NULL;
  if (count > SET_SLOTS_MAX) {
    PyErr_SetString(PyExc_ValueError, "at most 256 keys");
    return NULL;
  }
  for (Py_ssize_t i = 0; i < count; i++) {
    PyObject *item = PySequence_GetItem(keys, i);
    if (item == NULL) return NULL;
    order[i] = PyLong_AsLong(item);
    Py_DECREF(item);
    if (PyErr_Occurred()) return NULL;
    if (order[i] < 0) {
      PyErr_SetString(PyExc_ValueError, "keys are non-negative ints");
      return NULL;
    }
  }
  int written = set_order(order, (int)count);
  if (written < 0) {
    PyErr_SetString(PyExc_ValueError, "too many distinct keys");
    return NULL;
  }
  PyObject *result = PyList_New(written);
  if (result == NULL) return NULL;
  for (int i = 0; i < written; i++) PyList_SET_ITEM(result, i, PyLong_FromLong(order[i]));
  return result;
}

static PyMethodDef kernel_methods[] = {
    {"act", (PyCFunction)(void (*)(void))kernel_act, METH_FASTCALL, "act(body, grasp, x, y, z, rx, ry, rz, joint): one control period."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef kernel_getset[] = {
    {"record", (getter)kernel_get_record, (setter)kernel_set_record,
     "None, or a list that gets (nstep, xfrc_applied bytes, qfrc_applied bytes) before each mj_step call.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HandKernelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scenario_lib.scene._hand.HandKernel",
    .tp_doc = "The hand's controller and MuJoCo stepping for one (model, data) pair.",
    .tp_basicsize = sizeof(HandKernel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)kernel_init,
    .tp_dealloc = (destructor)kernel_dealloc,
    .tp_methods = kernel_methods,
    .tp_getset = kernel_getset,
};

static PyMethodDef module_methods[] = {
    {"set_order", module_set_order, METH_O, "The iteration order of a CPython set of these small non-negative ints."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hand_module = {PyModuleDef_HEAD_INIT, "_hand", "The abstract hand's compiled controller.", -1, module_methods};

PyMODINIT_FUNC PyInit__hand(void) {
  return module_with_type(&hand_module, &HandKernelType, "HandKernel");
}
