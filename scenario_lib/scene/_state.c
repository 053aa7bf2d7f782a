/* The state of a scene's movable bodies, read out of MuJoCo in one call per control step.

   `scenario_lib.scene.state.BodyStateReader` holds one `StateKernel` for a (model, simulation data,
   kinematics data) triple. `refresh` copies the simulation's qpos and qvel into the kinematics data and
   recomputes its positions, centre-of-mass quantities and velocities (mj_kinematics, mj_comPos,
   mj_comVel: the simulation data's own derived quantities lag its qpos by one substep after mj_step,
   and the hand reads them, so they are never refreshed in place). `read` returns the bodies' poses,
   velocities and joint values as new float64 arrays, the values numpy's take/multiply and
   mj_objectVelocity give, bit for bit: copies of doubles, and the joint values multiplied by 1.0 (a
   hinge or slide) or 0.0 (a free body, whose first qpos is its x coordinate). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#include <numpy/arrayobject.h>

#include <mujoco/mujoco.h>

#include "_kernel.h"

typedef struct {
  PyObject_HEAD
  PyObject *model_object, *data_object, *kinematics_object;  /* kept alive while the kernel points into them */
  const mjModel *m;
  const mjData *d;
  mjData *k;
  int nbodies;
  int *body_ids, *qpos, *dofs;
  double *jointed;  /* 1.0 for a hinge or slide body, 0.0 for a free one */
} StateKernel;

static int check_ready(StateKernel *self) {
  if (self->m != NULL) return 0;
  PyErr_SetString(PyExc_RuntimeError, "the state kernel was not initialised: make it with StateKernel(model, data, ...)");
  return -1;
}

static PyObject *kernel_refresh(StateKernel *self, PyObject *Py_UNUSED(ignored)) {
  if (check_ready(self) < 0) return NULL;
  const mjModel *m = self->m;
  memcpy(self->k->qpos, self->d->qpos, sizeof(mjtNum) * m->nq);
  memcpy(self->k->qvel, self->d->qvel, sizeof(mjtNum) * m->nv);
  mj_kinematics(m, self->k);
  mj_comPos(m, self->k);
  mj_comVel(m, self->k);
  Py_RETURN_NONE;
}

/* read() -> (position (n, 3), quaternion (n, 4), linear velocity (n, 3), angular velocity (n, 3),
   joint position (n,), joint velocity (n,)), each a new array. */
static PyObject *kernel_read(StateKernel *self, PyObject *Py_UNUSED(ignored)) {
  if (check_ready(self) < 0) return NULL;
  const mjModel *m = self->m;
  const mjData *k = self->k;
  npy_intp n = self->nbodies;
  npy_intp rows3[2] = {n, 3}, rows4[2] = {n, 4}, flat[1] = {n};
  PyObject *arrays[6] = {
      PyArray_SimpleNew(2, rows3, NPY_DOUBLE), PyArray_SimpleNew(2, rows4, NPY_DOUBLE),
      PyArray_SimpleNew(2, rows3, NPY_DOUBLE), PyArray_SimpleNew(2, rows3, NPY_DOUBLE),
      PyArray_SimpleNew(1, flat, NPY_DOUBLE),  PyArray_SimpleNew(1, flat, NPY_DOUBLE),
  };
  for (int i = 0; i < 6; i++)
    if (arrays[i] == NULL) {
      for (int j = 0; j < 6; j++) Py_XDECREF(arrays[j]);
      return NULL;
    }
  double *position = PyArray_DATA((PyArrayObject *)arrays[0]), *quaternion = PyArray_DATA((PyArrayObject *)arrays[1]);
  double *linear = PyArray_DATA((PyArrayObject *)arrays[2]), *angular = PyArray_DATA((PyArrayObject *)arrays[3]);
  double *joint_position = PyArray_DATA((PyArrayObject *)arrays[4]);
  double *joint_velocity = PyArray_DATA((PyArrayObject *)arrays[5]);
  for (int row = 0; row < self->nbodies; row++) {
    int id = self->body_ids[row];
    memcpy(position + 3 * row, k->xpos + 3 * id, sizeof(double) * 3);
    memcpy(quaternion + 4 * row, k->xquat + 4 * id, sizeof(double) * 4);
    double velocity[6];  /* [angular, linear] of the body frame origin, world orientation */
    mj_objectVelocity(m, k, mjOBJ_BODY, id, velocity, 0);
    memcpy(angular + 3 * row, velocity, sizeof(double) * 3);
    memcpy(linear + 3 * row, velocity + 3, sizeof(double) * 3);
    joint_position[row] = k->qpos[self->qpos[row]] * self->jointed[row];
    joint_velocity[row] = k->qvel[self->dofs[row]] * self->jointed[row];
  }
  return Py_BuildValue("(NNNNNN)", arrays[0], arrays[1], arrays[2], arrays[3], arrays[4], arrays[5]);
}

static int read_ints(PyObject *sequence, int *out, Py_ssize_t count, int bound, const char *what) {
  for (Py_ssize_t i = 0; i < count; i++) {
    PyObject *item = PySequence_GetItem(sequence, i);
    if (item == NULL) return -1;
    long value = PyLong_AsLong(item);
    Py_DECREF(item);
    if (value == -1 && PyErr_Occurred()) return -1;
    if (value < 0 || value >= bound) {
      PyErr_Format(PyExc_ValueError, "%s %ld is out of range: the model has %d", what, value, bound);
      return -1;
    }
    out[i] = (int)value;
  }
  return 0;
}

/* StateKernel(model, data, kinematics, body_ids, qpos, dofs, jointed): one row per movable body. */
static int kernel_init(StateKernel *self, PyObject *args, PyObject *kwargs) {
  PyObject *model, *data, *kinematics, *body_ids, *qpos, *dofs, *jointed;
  if (!PyArg_ParseTuple(args, "OOOOOOO", &model, &data, &kinematics, &body_ids, &qpos, &dofs, &jointed)) return -1;
  if (require_built_mujoco("state") < 0) return -1;
  const mjModel *m = address_of(model);
  const mjData *d = address_of(data);
  mjData *k = address_of(kinematics);
  if (m == NULL || d == NULL || k == NULL) return -1;
  if (d == k) {
    PyErr_SetString(PyExc_ValueError, "the kinematics data must be a second MjData, not the simulation's own");
    return -1;
  }
  Py_ssize_t count = PySequence_Size(body_ids);
  if (count < 0) return -1;
  if (PySequence_Size(qpos) != count || PySequence_Size(dofs) != count || PySequence_Size(jointed) != count) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "body_ids, qpos, dofs and jointed need one entry per body");
    return -1;
  }
  size_t size = count > 0 ? (size_t)count : 1;
  PyMem_Free(self->body_ids);
  PyMem_Free(self->qpos);
  PyMem_Free(self->dofs);
  PyMem_Free(self->jointed);
  self->nbodies = 0;
  self->m = NULL;  /* until the end: a failed init leaves a kernel that refuses to run */
  self->body_ids = PyMem_Calloc(size, sizeof(int));
  self->qpos = PyMem_Calloc(size, sizeof(int));
  self->dofs = PyMem_Calloc(size, sizeof(int));
  self->jointed = PyMem_Calloc(size, sizeof(double));
  if (self->body_ids == NULL || self->qpos == NULL || self->dofs == NULL || self->jointed == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  if (read_ints(body_ids, self->body_ids, count, m->nbody, "body id") < 0) return -1;
  if (read_ints(qpos, self->qpos, count, m->nq, "qpos address") < 0) return -1;
  if (read_ints(dofs, self->dofs, count, m->nv, "dof address") < 0) return -1;
  for (Py_ssize_t i = 0; i < count; i++) {
    PyObject *item = PySequence_GetItem(jointed, i);
    if (item == NULL) return -1;
    int truth = PyObject_IsTrue(item);
    Py_DECREF(item);
    if (truth < 0) return -1;
    self->jointed[i] = truth ? 1.0 : 0.0;
  }
  self->nbodies = (int)count;
  self->m = m;
  self->d = d;
  self->k = k;
  Py_XSETREF(self->model_object, Py_NewRef(model));
  Py_XSETREF(self->data_object, Py_NewRef(data));
  Py_XSETREF(self->kinematics_object, Py_NewRef(kinematics));
  return 0;
}

static void kernel_dealloc(StateKernel *self) {
  Py_XDECREF(self->model_object);
  Py_XDECREF(self->data_object);
  Py_XDECREF(self->kinematics_object);
  PyMem_Free(self->body_ids);
  PyMem_Free(self->qpos);
  PyMem_Free(self->dofs);
  PyMem_Free(self->jointed);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef kernel_methods[] = {
    {"refresh", (PyCFunction)kernel_refresh, METH_NOARGS,
     "Copy the simulation's qpos and qvel into the kinematics data and recompute its kinematics and velocities."},
    {"read", (PyCFunction)kernel_read, METH_NOARGS,
     "(position, quaternion, linear velocity, angular velocity, joint position, joint velocity) as new arrays."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StateKernelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scenario_lib.scene._state.StateKernel",
    .tp_doc = "Reads the movable bodies' state out of one (model, data, kinematics data) triple.",
    .tp_basicsize = sizeof(StateKernel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)kernel_init,
    .tp_dealloc = (destructor)kernel_dealloc,
    .tp_methods = kernel_methods,
};

static struct PyModuleDef state_module = {PyModuleDef_HEAD_INIT, "_state", "The movable bodies' state, read in C.", -1, NULL};

PyMODINIT_FUNC PyInit__state(void) {
  import_array();
  return module_with_type(&state_module, &StateKernelType, "StateKernel");
}
